# cmake -DSEGKIT_SOURCE_DIR=... -DWORK_DIR=... -DSEGKIT_CUDA=ON|OFF -P run_consumer_test.cmake
# Installs segkit into a scratch prefix, then builds and runs the consumer twice: through
# find_package(segkit) and through add_subdirectory(segkit).
file(REMOVE_RECURSE ${WORK_DIR})
set(_consumer ${CMAKE_CURRENT_LIST_DIR})
function(run_step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE _status OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
  if(NOT _status EQUAL 0)
    message(FATAL_ERROR "consumer test step failed: ${ARGN}\n${_out}")
  endif()
endfunction()
set(_no_programs -DSEGKIT_BUILD_TESTS=OFF -DSEGKIT_BUILD_BENCHMARKS=OFF -DSEGKIT_BUILD_EXAMPLES=OFF
                 -DSEGKIT_CUDA=${SEGKIT_CUDA})

run_step(${CMAKE_COMMAND} -S ${SEGKIT_SOURCE_DIR} -B ${WORK_DIR}/segkit-build
         -DCMAKE_INSTALL_PREFIX=${WORK_DIR}/prefix -DCMAKE_BUILD_TYPE=Release ${_no_programs})
run_step(${CMAKE_COMMAND} --build ${WORK_DIR}/segkit-build --parallel 2)
run_step(${CMAKE_COMMAND} --install ${WORK_DIR}/segkit-build)

run_step(${CMAKE_COMMAND} -S ${_consumer} -B ${WORK_DIR}/by-package
         -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DCMAKE_BUILD_TYPE=Release)
run_step(${CMAKE_COMMAND} --build ${WORK_DIR}/by-package)
run_step(${WORK_DIR}/by-package/consumer)

run_step(${CMAKE_COMMAND} -S ${_consumer} -B ${WORK_DIR}/by-subdirectory -DCONSUME_BY=subdirectory
         -DSEGKIT_SOURCE_DIR=${SEGKIT_SOURCE_DIR} -DCMAKE_BUILD_TYPE=Release ${_no_programs})
run_step(${CMAKE_COMMAND} --build ${WORK_DIR}/by-subdirectory --parallel 2)
run_step(${WORK_DIR}/by-subdirectory/consumer)
message(STATUS "consumer project built and ran through find_package and add_subdirectory")
