# HTTP server (`mimo serve`): libmicrohttpd, see docs/server.md for why.
pkg_check_modules(MHD REQUIRED IMPORTED_TARGET libmicrohttpd)
target_link_libraries(mimo_lib PUBLIC PkgConfig::MHD)
