/* workers.c: placeholder until the daemon lands. */
