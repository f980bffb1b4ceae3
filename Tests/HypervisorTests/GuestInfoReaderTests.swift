import Hypervisor
import Testing
import VMPulseCore

/// What a guest agent says is the guest's word: every field is checked, and a lie leaves
/// that field out rather than trapping or reaching the API as is.
@Suite struct GuestInfoReaderTests {
    @Test func interfacesKeepOnlyWellFormedAddresses() throws {
        let reply: JSONValue = [
            ["name": "eth0", "hardware-address": "52:54:00:12:34:56", "ip-addresses": [
                ["ip-address-type": "ipv4", "ip-address": "10.0.0.5", "prefix": 24],
                ["ip-address-type": "ipv6", "ip-address": "fe80::1", "prefix": 999],
                ["ip-address-type": "ipx", "ip-address": "1"],
                ["ip-address-type": "ipv4", "ip-address": 7],
            ]],
            ["name": 5],
            ["name": .string(String(repeating: "x", count: 5000))],
        ]
        let interfaces = try #require(GuestInfoReader.interfaces(reply))
        #expect(interfaces.count == 1)
        #expect(interfaces[0].addresses == [.init(type: "ipv4", address: "10.0.0.5", prefix: 24), .init(type: "ipv6", address: "fe80::1", prefix: nil)])
        #expect(GuestInfoReader.interfaces(.array(Array(repeating: ["name": "eth0"], count: 257))) == nil, "too many to be true")
        #expect(GuestInfoReader.interfaces("eth0") == nil)
    }

    @Test func filesystemsUsersAndTimeSurviveLies() {
        let fs = GuestInfoReader.filesystems([
            ["mountpoint": "/", "type": "ext4", "total-bytes": .uint(UInt64.max), "used-bytes": -5],
            ["mountpoint": "/x"],
        ])
        #expect(fs?.count == 1)
        #expect(fs?.first?.totalBytes == UInt64.max && fs?.first?.usedBytes == nil)
        let users = GuestInfoReader.users([["user": "root", "login-time": .double(1.5e9)], ["user": "eve", "login-time": -1], ["login-time": 3]])
        #expect(users?.map(\.name) == ["root", "eve"])
        #expect(users?.last?.loginTime == nil)
        #expect(GuestInfoReader.timeOffset(.int(1_800_000_003_000_000_000), hostNow: 1_800_000_000) == 3)
        #expect(GuestInfoReader.timeOffset(.int(-1), hostNow: 1_800_000_000) == nil)
        #expect(GuestInfoReader.timeOffset(.uint(UInt64.max), hostNow: 1_800_000_000) == nil)
        #expect(GuestInfoReader.timeOffset(.int(Int64.max), hostNow: 1_800_000_000) != nil, "a far-off clock is reported, not trapped on")
        #expect(GuestInfoReader.timeOffset("soon", hostNow: 0) == nil)
    }
}
