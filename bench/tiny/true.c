/* The raw reference for spawn: the smallest program, linked statically. */
int main(void) {
  return 0;
}
