# Images in requests (src/io/image.c): PNG through libpng, JPEG through libjpeg-turbo, WebP (still and the first
# frame of an animation) through libwebp and libwebpdemux: the libraries PIL links on Debian, so decoded pixels
# can match PIL's bit for bit.
pkg_check_modules(PNG REQUIRED IMPORTED_TARGET libpng)
pkg_check_modules(JPEG REQUIRED IMPORTED_TARGET libjpeg)
pkg_check_modules(WEBP REQUIRED IMPORTED_TARGET libwebp libwebpdemux)
target_link_libraries(mimo_lib PUBLIC PkgConfig::PNG PkgConfig::JPEG PkgConfig::WEBP)
