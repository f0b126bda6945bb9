# Imported target segkit::cudnn for cuDNN, looked up beside the CUDA toolkit. Used both when
# building segkit and by segkitConfig.cmake in consuming projects.
if(NOT TARGET segkit::cudnn)
  find_path(SEGKIT_CUDNN_INCLUDE_DIR cudnn.h HINTS ${CUDAToolkit_INCLUDE_DIRS} PATH_SUFFIXES include)
  find_library(SEGKIT_CUDNN_LIBRARY cudnn HINTS ${CUDAToolkit_LIBRARY_DIR} PATH_SUFFIXES lib64 lib)
  if(NOT SEGKIT_CUDNN_INCLUDE_DIR OR NOT SEGKIT_CUDNN_LIBRARY)
    message(FATAL_ERROR "segkit: SEGKIT_CUDA is ON but cuDNN was not found (looked beside "
                        "${CUDAToolkit_LIBRARY_DIR}); install cuDNN 9 or configure with -DSEGKIT_CUDA=OFF")
  endif()
  add_library(segkit::cudnn UNKNOWN IMPORTED)
  set_target_properties(segkit::cudnn PROPERTIES IMPORTED_LOCATION ${SEGKIT_CUDNN_LIBRARY}
                                                  INTERFACE_INCLUDE_DIRECTORIES ${SEGKIT_CUDNN_INCLUDE_DIR})
endif()
