@testable import API
import Agent
import Foundation
import Store
import Testing
import VMPulseCore

/// `Host.getBillingRecords` over a real ledger file.
@Suite struct BillingRecordsTests {
    func methods(ledgerAt path: String?) -> HostMethods {
        HostMethods(store: SnapshotStore(), book: nil, thin: nil, billing: path.map { BillingRecords(path: $0) })
    }

    func call(_ m: HostMethods, _ params: JSONValue?) -> Result<JSONValue, RPCError> {
        m.call(RPCCall(method: "Host.getBillingRecords", params: params, id: 1))
    }

    @Test func pagesOfTheLedgerWithEveryDigit() throws {
        let dir = "/tmp/vmpulse-billrec-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ledger = try Ledger.open(path: dir + "/ledger.sqlite")
        let rows = (0..<3).map { i in
            PeriodUsage(key: DiskKey(vmUUID: "u\(i)", disk: "drive0"), vmName: "vm\(i)", diskPath: "/d", periodStart: 0, periodEnd: 3600,
                        usage: BlockCounters([.writeBytes: UInt64.max - UInt64(i)]), samples: 1)
        }
        try ledger.write(LedgerBatch(usage: rows, gaps: [], cursors: [:]))
        let m = methods(ledgerAt: dir + "/ledger.sqlite")
        let first = try call(m, ["limit": 2]).get()
        #expect(first["records"]?.arrayValue?.count == 2)
        #expect(first["records"]?.arrayValue?.first?["write_bytes"] == .uint(UInt64.max))
        #expect(first["more"] == true && first["next"] == 2)
        let rest = try call(m, ["after": 2, "limit": 2]).get()
        #expect(rest["records"]?.arrayValue?.map { $0["vm_uuid"] } == ["u2"])
        #expect(rest["more"] == false)
        #expect(rest["ledger"] == first["ledger"])
    }

    @Test(arguments: [
        #"{"after": -1}"#, #"{"after": "5"}"#, #"{"limit": 0}"#, #"{"limit": 10001}"#, #"{"afterGap": 1.5}"#, #"{"cursor": 1}"#,
        #"[1, 2, 3, 4]"#, #"{"after": 18446744073709551615}"#,
    ])
    func badParametersAre32602(_ params: String) throws {
        let m = methods(ledgerAt: "/nonexistent/ledger.sqlite")
        guard case .failure(let e) = call(m, try JSONParser.parse(Array(params.utf8))) else { Issue.record("accepted \(params)"); return }
        #expect(e.code == RPCError.invalidParams, "\(params): \(e)")
    }

    @Test func noLedgerIsItsOwnError() throws {
        guard case .failure(let e) = call(methods(ledgerAt: "/nonexistent/ledger.sqlite"), nil) else { Issue.record("answered"); return }
        #expect(e.code == RPCError.ledgerUnavailable)
        #expect(e.message.contains("/nonexistent/ledger.sqlite"))
        guard case .failure(let none) = call(methods(ledgerAt: nil), nil) else { Issue.record("answered"); return }
        #expect(none.code == RPCError.ledgerUnavailable)
    }
}
