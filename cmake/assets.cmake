# Embeds assets/mimo_chat_template.jinja into the library as a C string, so
# `mimo synth` can write a complete model directory without the source tree.
set(MIMO_TEMPLATE_SRC ${CMAKE_SOURCE_DIR}/assets/mimo_chat_template.jinja)
set(MIMO_TEMPLATE_C ${CMAKE_BINARY_DIR}/generated/mimo_chat_template.c)
add_custom_command(
  OUTPUT ${MIMO_TEMPLATE_C}
  COMMAND ${CMAKE_COMMAND} -DIN=${MIMO_TEMPLATE_SRC} -DOUT=${MIMO_TEMPLATE_C} -P ${CMAKE_SOURCE_DIR}/cmake/scripts/embed.cmake
  DEPENDS ${MIMO_TEMPLATE_SRC} ${CMAKE_SOURCE_DIR}/cmake/scripts/embed.cmake
  COMMENT "Embedding the default chat template")
target_sources(mimo_lib PRIVATE ${MIMO_TEMPLATE_C})
