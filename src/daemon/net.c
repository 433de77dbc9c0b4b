/* net.c: placeholder until the daemon lands. */
