/* loop.c: placeholder until the daemon lands. */
