# cmake -DIN=file -DOUT=file.c -P embed.cmake : writes `const char mimo_default_chat_template[]`.
file(READ ${IN} hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
file(WRITE ${OUT} "/* generated from ${IN}; do not edit */\nconst char mimo_default_chat_template[] = {${bytes}0x00};\n")
