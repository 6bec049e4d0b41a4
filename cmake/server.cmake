# HTTP server (`mimo serve`): libmicrohttpd, see docs/server.md for why.
pkg_check_modules(MHD REQUIRED IMPORTED_TARGET libmicrohttpd)
target_link_libraries(mimo_lib PUBLIC PkgConfig::MHD)
# The chat API parses tool calls once the qwen3_xml parser (src/text/toolcall.c) is in the tree.
if(EXISTS ${CMAKE_SOURCE_DIR}/src/text/toolcall.c)
  target_compile_definitions(mimo_lib PRIVATE MIMO_HAVE_TOOLCALL=1)
endif()
