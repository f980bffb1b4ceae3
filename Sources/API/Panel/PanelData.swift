import Agent
import VMPulseCore

/// What the panel at `GET /` shows, as JSON: built from the latest snapshots and the thin
/// disks' statuses only, so a page view never waits on QEMU or libvirt. VMs are keyed by
/// their machine (monitor socket or libvirt domain), which is unique even when two VMs
/// claim one UUID.
enum PanelData {
    /// `GET /v1/panel`: one row per VM, sorted by name.
    static func overview(_ vms: [VMSnapshot], book: StatusBook?, thin: [ThinDiskStatus], now: Double, wallNow: Double,
                         interval: Double) -> JSONValue {
        let rows: [JSONValue] = vms.sorted { ($0.name, $0.machine) < ($1.name, $1.machine) }.map { vm in
            let view = VMView(vm: vm, entry: book?.entry(machine: vm.machine))
            var o: [String: JSONValue] = [
                "id": .string(vm.machine), "name": .string(vm.name), "uuid": .string(vm.uuid), "status": .string(view.status),
                "responsive": .bool(vm.responsive), "disks": .int(Int64(vm.disks.count)),
                "thinDisks": .int(Int64(thin.filter { owns(vm, $0) }.count)),
            ]
            if let cpu = vm.cpu { o["cpu"] = .double(VMView.rounded(cpu.user + cpu.system, 100)) }
            if let answered = vm.lastAnswer { o["statsAge"] = .double(VMView.rounded(max(0, now - answered), 1000)) }
            var rates: [String: Double] = [:]
            for disk in vm.disks {
                guard let f = vm.windows[disk.name]?.figures(window: 60) else { continue }
                rates["readBps", default: 0] += f.bytesPerSecond[.read] ?? 0
                rates["writeBps", default: 0] += f.bytesPerSecond[.write] ?? 0
                rates["readIops", default: 0] += f.opsPerSecond[.read] ?? 0
                rates["writeIops", default: 0] += f.opsPerSecond[.write] ?? 0
            }
            for (k, v) in rates { o[k] = .double(VMView.rounded(v, 100)) }
            return .object(o)
        }
        return ["time": .double(wallNow), "interval": .double(interval), "vms": .array(rows)]
    }

    /// `GET /v1/panel/vm?id=`: one VM's disks with their windows and charts, and its thin disks.
    static func detail(_ vm: VMSnapshot, book: StatusBook?, thin: [ThinDiskStatus], now: Double, wallNow: Double) -> JSONValue {
        let view = VMView(vm: vm, entry: book?.entry(machine: vm.machine))
        let disks: [JSONValue] = vm.disks.map { disk in
            var o: [String: JSONValue] = ["name": .string(disk.name)]
            if let history = vm.windows[disk.name] {
                var windows: [String: JSONValue] = [:]
                for (label, seconds) in IOWindows.windows {
                    if let f = history.figures(window: seconds) { windows[label] = figures(f) }
                }
                o["windows"] = .object(windows)
                o["chart"] = chart(IOSeries.points(history.history), now: now, wallNow: wallNow)
            }
            return .object(o)
        }
        var o: [String: JSONValue] = [
            "id": .string(vm.machine), "name": .string(vm.name), "uuid": .string(vm.uuid), "status": .string(view.status),
            "responsive": .bool(vm.responsive), "disks": .array(disks), "errors": .array(vm.errors.map { .string($0) }),
            "thin": .array(thin.filter { owns(vm, $0) }.map(thinDisk)), "time": .double(wallNow),
        ]
        if let answered = vm.lastAnswer { o["statsAge"] = .double(VMView.rounded(max(0, now - answered), 1000)) }
        return .object(o)
    }

    static func owns(_ vm: VMSnapshot, _ disk: ThinDiskStatus) -> Bool {
        disk.vmUUID.map { $0 == vm.uuid } ?? (disk.vmName == vm.name || disk.vm == vm.name)
    }

    static func figures(_ f: IOWindows.Figures) -> JSONValue {
        var o: [String: JSONValue] = ["seconds": .double(VMView.rounded(f.seconds, 1000))]
        for op in [IOOperation.read, .write] {
            let name = op.rawValue
            o[name + "Bps"] = .double(VMView.rounded(f.bytesPerSecond[op] ?? 0, 100))
            o[name + "Iops"] = .double(VMView.rounded(f.opsPerSecond[op] ?? 0, 100))
            if let v = f.latencyAvgNs[op] { o[name + "LatencyMs"] = .double(VMView.rounded(v / 1e6, 1000)) }
            if let v = f.latencyP99Ns[op] { o[name + "P99Ms"] = .double(VMView.rounded(Double(v) / 1e6, 1000)) }
            if let v = f.queueDepthAvg[op] { o[name + "QueueDepth"] = .double(VMView.rounded(v, 1000)) }
        }
        return .object(o)
    }

    /// The chart points as columns (`time` in Unix seconds); a value the interval does not
    /// have (no operation, no histogram) is null, so the line breaks there.
    static func chart(_ points: [IOPoint], now: Double, wallNow: Double) -> JSONValue {
        func column(_ value: (IOPoint) -> Double?) -> JSONValue {
            .array(points.map { p in value(p).map { .double(VMView.rounded($0, 1000)) } ?? .null })
        }
        return [
            "time": column { wallNow - (now - $0.time) },
            "readBps": column { $0.bytesPerSecond[.read] }, "writeBps": column { $0.bytesPerSecond[.write] },
            "readIops": column { $0.opsPerSecond[.read] }, "writeIops": column { $0.opsPerSecond[.write] },
            "readLatencyMs": column { $0.latencyAvgNs[.read].map { $0 / 1e6 } },
            "writeLatencyMs": column { $0.latencyAvgNs[.write].map { $0 / 1e6 } },
            "readP99Ms": column { $0.latencyP99Ns[.read].map { Double($0) / 1e6 } },
            "writeP99Ms": column { $0.latencyP99Ns[.write].map { Double($0) / 1e6 } },
            "queueDepth": column { $0.queueDepth },
        ]
    }

    static func thinDisk(_ d: ThinDiskStatus) -> JSONValue {
        var o: [String: JSONValue] = [
            "drive": .string(d.drive), "state": .string(d.state), "physical": .uint(d.physical),
            "extensions": .int(Int64(d.extensions)), "failures": .int(Int64(d.failures)), "paused": .bool(d.pausedForSpace),
        ]
        if let v = d.mark { o["threshold"] = .uint(v) }
        if let v = d.maximum { o["maximum"] = .uint(v) }
        if let v = d.lastExtensionMs { o["lastExtensionMs"] = .double(v) }
        if let v = d.problem ?? d.reason { o["note"] = .string(v) }
        return .object(o)
    }
}
