/* Old-style tests include "../test-skeleton.c" after defining TEST_FUNCTION (this project's
   shim: the same driver as the new style). */
#include <support/test-driver.c>
