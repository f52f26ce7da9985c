// The one Catch2 main of the test suite, compiled once and linked into every area.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
