/* checkpoint.c: placeholder until the daemon lands. */
