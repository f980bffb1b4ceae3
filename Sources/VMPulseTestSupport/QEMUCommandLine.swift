/// The QEMU command line of a test guest, in one place for tests, `make demo` and the benchmarks.
enum QEMUCommandLine {
    static func arguments(for spec: GuestSpec, guest: Guest, images: String) -> [String] {
        var args = [
            "-name", spec.name, "-uuid", spec.uuid,
            "-machine", "q35,accel=tcg", "-m", "\(spec.memoryMiB)",
            "-smp", "\(spec.vcpus),maxcpus=\(spec.maxVCPUs ?? spec.vcpus)",
            "-nodefaults", "-no-user-config", "-display", "none",
            "-daemonize", "-pidfile", guest.pidFile,
            "-qmp", "unix:\(guest.socketPath),server=on,wait=off",
            // A second monitor for the test itself (vmpulse holds the first).
            "-qmp", "unix:\(guest.controlSocket),server=on,wait=off",
        ]
        if spec.paused {
            args.append("-S")
        } else {
            var append = "console=ttyS0 quiet panic=-1"
            if let workload = spec.workload { append += " wl=\(workload)" }
            args += [
                "-kernel", images + "/vmlinuz", "-initrd", images + "/initrd.img", "-append", append,
                "-serial", "file:\(guest.serialLog)",
                "-chardev", "socket,id=cmd,path=\(guest.shellSocket),server=on,wait=off",
                "-device", "isa-serial,chardev=cmd",
            ]
        }
        for (i, disk) in guest.disks.enumerated() {
            let d = spec.disks[i]
            let file = d.blkdebug == nil ? disk : "blkdebug:\(guest.directory)/blkdebug\(i).conf:\(disk)"
            var drive = "file=\(file),if=none,id=drive\(i),format=\(d.format)"
            if let extra = d.driveOptions { drive += "," + extra }
            for (j, seconds) in spec.statsIntervals.enumerated() { drive += ",stats-intervals.\(j)=\(seconds)" }
            args += ["-drive", drive, "-device", "virtio-blk-pci,drive=drive\(i),id=disk\(i)"]
        }
        if spec.balloon { args += ["-device", "virtio-balloon-pci,id=balloon0"] }
        if let tap = spec.tap {
            args += ["-netdev", "tap,id=net0,ifname=\(tap),script=no,downscript=no", "-device", "virtio-net-pci,netdev=net0,id=nic0,romfile="]
        }
        if spec.guestAgent {
            args += ["-chardev", "socket,id=qga0,path=\(guest.agentSocket),server=on,wait=off",
                     "-device", "virtio-serial-pci,id=vser0", "-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0"]
        }
        if spec.userNetwork {
            args += ["-netdev", "user,id=unet0,restrict=on", "-device", "virtio-net-pci,netdev=unet0,id=nic1,romfile="]
        }
        if let display = spec.vncDisplay { args += ["-vnc", "127.0.0.1:\(display)"] }
        if let order = spec.bootOrder { args += ["-boot", "order=\(order)"] }
        if let image = spec.cdrom {
            args += ["-drive", "file=\(image),if=none,id=cd0,media=cdrom,readonly=on,format=raw", "-device", "ide-cd,drive=cd0,bus=ide.0,id=cdrom0"]
        }
        return args + spec.extraArguments
    }
}
