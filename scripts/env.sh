# Sourced by the scripts that launch training: the process settings that make it faster on CPU.
# tcmalloc (Debian libtcmalloc-minimal4; scripts/setup.sh installs it) cuts the page-fault and
# kernel time of XLA's CPU runtime, which allocates and frees large buffers every step.
# SCALING_LAB_TCMALLOC=0 turns it off.
for _lib in /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 /usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4; do
  if [ "${SCALING_LAB_TCMALLOC:-1}" = 1 ] && [ -e "$_lib" ]; then
    case ":${LD_PRELOAD:-}:" in *":$_lib:"*) ;; *) export LD_PRELOAD="$_lib${LD_PRELOAD:+:$LD_PRELOAD}" ;; esac
    break
  fi
done
unset _lib
