// libvirt's C API as the Libvirt module sees it (Debian's libvirt-dev, found by pkg-config).
// Only Sources/Libvirt imports this module; nothing else in vmpulse sees a C type.
#ifndef VMPULSE_CLIBVIRT_SHIM_H
#define VMPULSE_CLIBVIRT_SHIM_H

#include <stdlib.h>
#include <libvirt/libvirt.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/virterror.h>

// Macros Swift does not import as constants.
static const int vmpulse_uuid_string_buflen = VIR_UUID_STRING_BUFLEN;
static const int vmpulse_typed_param_field_length = VIR_TYPED_PARAM_FIELD_LENGTH;

#endif
