/* common.c: placeholder until the clients land. */
