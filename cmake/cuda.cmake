# CUDA backend (-DMIMO_CUDA=ON): src/backend/cuda/*.cu into mimo_lib for sm_80
# (SASS + compute_80 PTX, so the SM80 path can be JIT-run on Hopper) and sm_90a.
# MIMO_CUDA_GENCODE overrides the targets (gpu-check builds a compute_80-PTX-only
# copy to exercise the SM80 path on Hopper).
if(MIMO_CUDA)
  set(MIMO_CUDA_GENCODE
      "-gencode=arch=compute_80,code=sm_80;-gencode=arch=compute_80,code=compute_80;-gencode=arch=compute_90a,code=sm_90a"
      CACHE STRING "nvcc -gencode flags for the CUDA backend")
  set(CMAKE_CUDA_ARCHITECTURES OFF)
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
  # The top-level warning flags are C flags: keep them off nvcc's command line.
  foreach(tgt mimo_lib)
    get_target_property(opts ${tgt} COMPILE_OPTIONS)
    if(opts)
      set(wrapped "")
      foreach(o ${opts})
        list(APPEND wrapped "$<$<COMPILE_LANGUAGE:C>:${o}>")
      endforeach()
      set_target_properties(${tgt} PROPERTIES COMPILE_OPTIONS "${wrapped}")
    endif()
  endforeach()
  get_directory_property(dopts COMPILE_OPTIONS)
  set(wrapped "")
  foreach(o ${dopts})
    list(APPEND wrapped "$<$<COMPILE_LANGUAGE:C>:${o}>")
  endforeach()
  set_directory_properties(PROPERTIES COMPILE_OPTIONS "${wrapped}")

  file(GLOB MIMO_CUDA_SRC CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/backend/cuda/*.cu)
  target_sources(mimo_lib PRIVATE ${MIMO_CUDA_SRC})
  target_compile_options(mimo_lib PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:${MIMO_CUDA_GENCODE} -O3 -std=c++17 --Werror=all-warnings -Xcompiler=-Wall,-Wextra,-Wno-unused-function -D_GNU_SOURCE>)
  target_compile_definitions(mimo_lib PUBLIC MIMO_HAVE_CUDA=1)
  target_link_libraries(mimo_lib PUBLIC CUDA::cudart_static CUDA::cublas CUDA::cublasLt)
  set_target_properties(mimo_lib PROPERTIES CUDA_ARCHITECTURES OFF CUDA_RESOLVE_DEVICE_SYMBOLS ON)

  # GPU checks and micro-benchmarks (run by tools/gpu-check, not by ctest).
  file(GLOB MIMO_CUDA_CHECK_SRC CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/cuda/*.c)
  add_executable(mimo_cuda_check ${MIMO_CUDA_CHECK_SRC})
  target_link_libraries(mimo_cuda_check PRIVATE mimo_lib)
  set_target_properties(mimo_cuda_check PROPERTIES CUDA_ARCHITECTURES OFF)
endif()
