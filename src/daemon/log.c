/* log.c: placeholder until the daemon lands. */
