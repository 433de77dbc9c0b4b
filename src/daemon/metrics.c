/* metrics.c: placeholder until the daemon lands. */
