// The target that compiles tests/testing/test_pch.h once for every test (flightcache_test_pch).
