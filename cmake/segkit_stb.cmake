# segkit::stb — Debian's libstb (stb_image / stb_image_write compiled once, as libstb.so), so
# segkit's image I/O stays header-only without asking users for an STB_*_IMPLEMENTATION file.
if(NOT TARGET segkit::stb)
  find_path(SEGKIT_STB_INCLUDE_DIR stb/stb_image.h)
  find_library(SEGKIT_STB_LIBRARY NAMES stb)
  if(NOT SEGKIT_STB_INCLUDE_DIR OR NOT SEGKIT_STB_LIBRARY)
    message(FATAL_ERROR "segkit needs stb for image I/O (Debian: apt-get install libstb-dev); "
                        "found header: '${SEGKIT_STB_INCLUDE_DIR}', library: '${SEGKIT_STB_LIBRARY}'")
  endif()
  add_library(segkit::stb UNKNOWN IMPORTED)
  set_target_properties(segkit::stb PROPERTIES
    IMPORTED_LOCATION "${SEGKIT_STB_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${SEGKIT_STB_INCLUDE_DIR}")
endif()
