/* session.c: placeholder until the daemon lands. */
