/* cli.c: placeholder until the clients land. */
int main(void) { return 0; }
