internal import CLibvirt

/// Reading libvirt's C records into Swift values. Nothing here frees; callers own the memory.
enum TypedParams {
    /// The parameters of a `virTypedParameter` array of `count` entries; unknown types are left out.
    static func read(_ params: UnsafeMutablePointer<virTypedParameter>?, count: Int32) -> [LibvirtParam] {
        guard let params, count > 0 else { return [] }
        var result: [LibvirtParam] = []
        result.reserveCapacity(Int(count))
        for index in 0..<Int(count) {
            let param = params[index]
            guard let value = value(of: param) else { continue }
            result.append(LibvirtParam(name: name(of: param), value: value))
        }
        return result
    }

    /// The name from the fixed-size `field` (a C char array imported as a tuple), up to its NUL.
    static func name(of param: virTypedParameter) -> String {
        withUnsafeBytes(of: param.field) { raw in
            let bounded = raw.prefix(Int(vmpulse_typed_param_field_length))
            return String(decoding: bounded.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    static func value(of param: virTypedParameter) -> LibvirtValue? {
        switch param.type {
        case LibvirtConstants.c(VIR_TYPED_PARAM_INT.rawValue): .int(Int64(param.value.i))
        case LibvirtConstants.c(VIR_TYPED_PARAM_UINT.rawValue): .uint(UInt64(param.value.ui))
        case LibvirtConstants.c(VIR_TYPED_PARAM_LLONG.rawValue): .int(param.value.l)
        case LibvirtConstants.c(VIR_TYPED_PARAM_ULLONG.rawValue): .uint(param.value.ul)
        case LibvirtConstants.c(VIR_TYPED_PARAM_DOUBLE.rawValue): .double(param.value.d)
        case LibvirtConstants.c(VIR_TYPED_PARAM_BOOLEAN.rawValue): .bool(param.value.b != 0)
        case LibvirtConstants.c(VIR_TYPED_PARAM_STRING.rawValue): .string(param.value.s.map { String(cString: $0) } ?? "")
        default: nil
        }
    }

    /// The records of a `virDomainStatsRecordPtr` list (NULL-terminated), each with its domain's name and UUID.
    static func records(_ list: UnsafeMutablePointer<virDomainStatsRecordPtr?>?) -> [LibvirtDomainStats] {
        guard let list else { return [] }
        var result: [LibvirtDomainStats] = []
        var index = 0
        while let record = list[index] {
            index += 1
            let entry = record.pointee
            guard let dom = entry.dom else { continue }
            result.append(LibvirtDomainStats(
                name: Domain.name(dom), uuid: Domain.uuid(dom),
                params: read(entry.params, count: entry.nparams)))
        }
        return result
    }
}

/// Local getters of a `virDomainPtr` (no RPC: libvirt keeps name and UUID in the handle).
enum Domain {
    static func name(_ dom: OpaquePointer) -> String {
        virDomainGetName(dom).map { String(cString: $0) } ?? ""
    }

    /// Name, UUID and id of a domain listed as active, without a call to libvirtd (all three
    /// are kept in the handle); its state is not read (`state` and `reason` are -1).
    static func listed(_ dom: OpaquePointer) -> LibvirtDomainInfo {
        let id = virDomainGetID(dom)
        return LibvirtDomainInfo(name: name(dom), uuid: uuid(dom), id: id == UInt32.max ? -1 : Int32(exactly: id) ?? -1,
                                 state: -1, reason: -1, isActive: true)
    }

    /// Name, UUID, id and state (`virDomainGetState`; a failure is thrown with `operation`).
    static func info(_ dom: OpaquePointer, _ operation: String) throws(LibvirtError) -> LibvirtDomainInfo {
        var state: Int32 = 0
        var reason: Int32 = 0
        guard virDomainGetState(dom, &state, &reason, 0) == 0 else {
            throw LibvirtError.last("\(operation): cannot read the state of domain \(name(dom))")
        }
        let id = virDomainGetID(dom)
        return LibvirtDomainInfo(
            name: name(dom), uuid: uuid(dom),
            id: id == UInt32.max ? -1 : Int32(exactly: id) ?? -1,
            state: state, reason: reason, isActive: virDomainIsActive(dom) == 1)
    }

    static func uuid(_ dom: OpaquePointer) -> String {
        var buffer = [CChar](repeating: 0, count: Int(vmpulse_uuid_string_buflen))
        guard virDomainGetUUIDString(dom, &buffer) == 0 else { return "" }
        let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self).lowercased()
    }
}
