/* hdr.c: placeholder until the clients land. */
