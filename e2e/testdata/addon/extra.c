/* A shared library outside the app dir that the addon links against: the
   image's library closure must find it and put it where the loader looks. */
const char *nbextra_greeting(void) { return "hello from libnbextra"; }
