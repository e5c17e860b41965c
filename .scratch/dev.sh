# sourced on the device: tools, Vulkan, deno, node_modules
for f in .gl/*.deb; do dpkg -x $f / ; done >/dev/null; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
test -x /tmp/deno || (xz -dc .devdeno/deno.xz > /tmp/deno && chmod +x /tmp/deno)
test -d node_modules/@huggingface || cp -r .devnm/node_modules ./node_modules
export SLUICE_BENCH_DIR=${SLUICE_BENCH_DIR:-$PWD/.bench/gpu20}
