# HTTP server (`mimo serve`): libmicrohttpd, see docs/server.md for why.
pkg_check_modules(MHD REQUIRED IMPORTED_TARGET libmicrohttpd)
target_link_libraries(mimo_lib PUBLIC PkgConfig::MHD)
# Image URLs in requests (http:// and https://, as vLLM fetches them): libcurl.
pkg_check_modules(CURL REQUIRED IMPORTED_TARGET libcurl)
target_link_libraries(mimo_lib PUBLIC PkgConfig::CURL)
