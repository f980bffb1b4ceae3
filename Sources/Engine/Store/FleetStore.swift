import VMPulseCore

/// The fleet store: the latest view of every host and VM, the history of status changes,
/// and the billing rows copied from every agent's ledger. Its logic is written once over
/// `FleetDatabase`; SQLite and PostgreSQL differ only below that.
public struct FleetStore: Sendable {
    public let database: any FleetDatabase

    public init(database: any FleetDatabase) {
        self.database = database
    }

    /// Opens the store at `location`, bringing its schema up to date unless `readOnly`.
    public static func open(_ location: StoreLocation, readOnly: Bool = false) async throws(FleetStoreError) -> FleetStore {
        let db: any FleetDatabase
        switch location {
        case .sqlite(let path): db = try SQLiteFleetDatabase(path: path, readOnly: readOnly)
        case .postgres(let url): db = try PostgresFleetDatabase(url: url)
        }
        let store = FleetStore(database: db)
        do {
            if !readOnly { try await store.migrate() } else { _ = try await store.schemaVersion() }
        } catch {
            await db.close()
            throw error
        }
        return store
    }

    // MARK: schema

    func schemaVersion() async throws(FleetStoreError) -> Int {
        let rows = try await database.query("SELECT value FROM fleet_meta WHERE key = 'schema_version'", [])
        guard let text = rows.first?["value"]?.text else { return 0 }
        guard let v = Int(text), v >= 0 else {
            throw FleetStoreError("fleet store \(database.location): fleet_meta.schema_version holds '\(text.prefix(40))', not a version")
        }
        return v
    }

    /// Applies the migrations not yet applied, each in one transaction with its version.
    /// A store written by a newer vmpulse is refused, not written.
    public func migrate() async throws(FleetStoreError) {
        try await database.transaction([SQLStatement(
            "CREATE TABLE IF NOT EXISTS fleet_meta (key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (key))")])
        let migrations = FleetSchema.migrations(database.dialect)
        let version = try await schemaVersion()
        guard version <= migrations.count else {
            throw FleetStoreError("fleet store \(database.location) has schema version \(version), newer than this vmpulse's \(migrations.count); "
                + "use that version of vmpulse")
        }
        for (i, step) in migrations.enumerated() where i >= version {
            try await database.transaction(step.map { SQLStatement($0) } + [SQLStatement(
                "INSERT INTO fleet_meta (key, value) VALUES ('schema_version', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [.text(String(i + 1))])])
        }
    }

    // MARK: writing

    /// Writes one host's state and, when `vms` is given, replaces its VMs with them, with the
    /// status changes seen: one transaction.
    public func save(host: HostReport, vms: [VMReport]?, changes: [StatusChange]) async throws(FleetStoreError) {
        var statements = [SQLStatement(
            """
            INSERT INTO hosts (name, address, state, last_answer, last_attempt, problem, vm_count, stale_after, updated)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET address = excluded.address, state = excluded.state,
              last_answer = excluded.last_answer, last_attempt = excluded.last_attempt, problem = excluded.problem,
              vm_count = excluded.vm_count, stale_after = excluded.stale_after, updated = excluded.updated
            """,
            [.text(host.name), .text(host.address), .text(host.state.rawValue), Self.real(host.lastAnswer), Self.real(host.lastAttempt),
             host.problem.map { .text(String($0.prefix(2000))) } ?? .null, .integer(Int64(host.vmCount)), .real(host.staleAfter),
             .real(WallClock.now())])]
        if let vms {
            statements.append(SQLStatement("DELETE FROM host_vms WHERE host = ?", [.text(host.name)]))
            for vm in vms {
                statements.append(SQLStatement(
                    """
                    INSERT INTO host_vms (host, uuid, name, status, cpu_user, cpu_sys, mem_usage, elapsed, stats_age, hashes, conf, status_info, guest, devices, seen)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                    [.text(host.name), .text(vm.uuid), vm.name.map { .text($0) } ?? .null, .text(vm.status), Self.real(vm.cpuUser),
                     Self.real(vm.cpuSys), Self.real(vm.memUsage), vm.elapsed.map { .integer($0) } ?? .null, Self.real(vm.statsAge),
                     .text(JSONText.serialize(.object(vm.hashes.mapValues { .string($0) }))), Self.json(vm.conf), Self.json(vm.statusInfo),
                     Self.json(vm.guest), Self.json(vm.devices), .real(vm.seen)]))
            }
        }
        for c in changes {
            statements.append(SQLStatement(
                """
                INSERT INTO status_changes (host, uuid, seq, at, from_status, to_status, source) VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (host, uuid, seq) DO NOTHING
                """,
                [.text(c.host), .text(c.uuid), .integer(Self.sequence(c.at)), .real(c.at), c.from.map { .text($0) } ?? .null, .text(c.to),
                 .text(c.source)]))
        }
        try await database.transaction(statements)
    }

    /// Copies one page of a host's ledger with the cursor that follows it, in one transaction.
    /// Each row is the period's whole stored usage, keyed by host, ledger, VM, disk and
    /// period: a page copied twice (an engine killed before it saw the commit) writes the
    /// same values again, so nothing is ever counted twice.
    public func copy(_ page: BillingPage, host: String) async throws(FleetStoreError) {
        let counters = FleetSchema.counterNames
        let columns = ["host", "ledger", "vm_uuid", "disk", "period_start", "period_end", "vm_name", "disk_path", "samples", "rev"] + counters
        let updates = columns.dropFirst(5).map { "\($0) = excluded.\($0)" }.joined(separator: ", ")
        let rowSQL = """
            INSERT INTO billing (\(columns.joined(separator: ", "))) VALUES (\(Array(repeating: "?", count: columns.count).joined(separator: ", ")))
            ON CONFLICT (host, ledger, vm_uuid, disk, period_start) DO UPDATE SET \(updates)
            """
        var statements: [SQLStatement] = page.rows.map { r in
            let u = r.usage
            return SQLStatement(rowSQL, [
                .text(host), .text(page.ledger), .text(u.key.vmUUID), .text(u.key.disk), .integer(u.periodStart), .integer(u.periodEnd),
                .text(u.vmName), .text(u.diskPath), .integer(Int64(u.samples)), .integer(r.revision),
            ] + IOCounter.allCases.map { .text(String(u.usage[$0])) })
        }
        for g in page.gaps {
            statements.append(SQLStatement(
                """
                INSERT INTO billing_gaps (host, ledger, gap_id, vm_uuid, vm_name, disk, from_time, to_time, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (host, ledger, gap_id) DO NOTHING
                """,
                [.text(host), .text(page.ledger), .integer(g.id), .text(g.gap.key.vmUUID), .text(g.gap.vmName), .text(g.gap.key.disk),
                 .real(g.gap.from), .real(g.gap.to), .text(g.gap.reason)]))
        }
        statements.append(SQLStatement(
            """
            INSERT INTO billing_cursors (host, ledger, rev, gap) VALUES (?, ?, ?, ?)
            ON CONFLICT (host) DO UPDATE SET ledger = excluded.ledger, rev = excluded.rev, gap = excluded.gap
            """,
            [.text(host), .text(page.ledger), .integer(page.next), .integer(page.nextGap)]))
        try await database.transaction(statements)
    }

    // MARK: reading

    public func cursor(host: String) async throws(FleetStoreError) -> BillingCursor? {
        let rows = try await database.query("SELECT ledger, rev, gap FROM billing_cursors WHERE host = ?", [.text(host)])
        guard let row = rows.first else { return nil }
        guard let ledger = row["ledger"]?.text, let rev = row["rev"]?.integer, let gap = row["gap"]?.integer, rev >= 0, gap >= 0 else {
            throw invalid("billing_cursors", "host \(host)", "a ledger id and two revisions of 0 or more")
        }
        return BillingCursor(ledger: ledger, revision: rev, gap: gap)
    }

    public func hosts() async throws(FleetStoreError) -> [HostReport] {
        try await database.query("SELECT * FROM hosts ORDER BY name", []).map { row throws(FleetStoreError) in
            guard let name = row["name"]?.text, let address = row["address"]?.text, let stateText = row["state"]?.text,
                  let count = row["vm_count"]?.integer, let staleAfter = row["stale_after"]?.real else {
                throw invalid("hosts", "name \(row["name"]?.text ?? "?")", "a name, address, state, VM count and stale_after")
            }
            return HostReport(name: name, address: address, state: HostState(rawValue: stateText) ?? .unknown, lastAnswer: row["last_answer"]?.real,
                              lastAttempt: row["last_attempt"]?.real, problem: row["problem"]?.text, vmCount: Int(count), staleAfter: staleAfter)
        }
    }

    /// Every host's report of every VM.
    public func hostVMs() async throws(FleetStoreError) -> [(host: String, vm: VMReport)] {
        try await database.query("SELECT * FROM host_vms ORDER BY host, uuid", []).map { row throws(FleetStoreError) in
            guard let host = row["host"]?.text, let uuid = row["uuid"]?.text, let status = row["status"]?.text, let seen = row["seen"]?.real else {
                throw invalid("host_vms", "uuid \(row["uuid"]?.text ?? "?")", "a host, UUID, status and time seen")
            }
            var hashes: [String: String] = [:]
            if let text = row["hashes"]?.text, case .object(let o)? = try? JSONParser.parse(Array(text.utf8)) {
                for (k, v) in o { if let s = v.stringValue { hashes[k] = s } }
            }
            var vm = VMReport(uuid: uuid, status: status, hashes: hashes, seen: seen)
            vm.name = row["name"]?.text
            vm.cpuUser = row["cpu_user"]?.real
            vm.cpuSys = row["cpu_sys"]?.real
            vm.memUsage = row["mem_usage"]?.real
            vm.elapsed = row["elapsed"]?.integer
            vm.statsAge = row["stats_age"]?.real
            vm.conf = Self.parsed(row["conf"])
            vm.statusInfo = Self.parsed(row["status_info"])
            vm.guest = Self.parsed(row["guest"])
            vm.devices = Self.parsed(row["devices"])
            return (host, vm)
        }
    }

    /// The fleet's view: one entry per VM UUID, on the host of its best claim.
    public func vms(now: Double = WallClock.now()) async throws(FleetStoreError) -> [FleetVM] {
        let hosts = Dictionary(try await self.hosts().map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        return FleetView.choose(try await hostVMs(), hosts: hosts, now: now)
    }

    public func statusChanges(limit: Int = 1000) async throws(FleetStoreError) -> [StatusChange] {
        try await database.query("SELECT * FROM status_changes ORDER BY at DESC, seq DESC LIMIT ?", [.integer(Int64(max(1, limit)))]).map { row throws(FleetStoreError) in
            guard let host = row["host"]?.text, let uuid = row["uuid"]?.text, let at = row["at"]?.real, let to = row["to_status"]?.text,
                  let source = row["source"]?.text else {
                throw invalid("status_changes", "uuid \(row["uuid"]?.text ?? "?")", "a host, UUID, time, status and source")
            }
            return StatusChange(host: host, uuid: uuid, at: at, from: row["from_status"]?.text, to: to, source: source)
        }
    }

    /// Usage of periods starting in [from, to), per host, VM, disk and period (summed over the
    /// ledgers a host had, with checked arithmetic: a sum past 2^64 - 1 is an error, never wrapped).
    public func billing(from: Int64? = nil, to: Int64? = nil, vm: String? = nil) async throws(FleetStoreError) -> [FleetUsage] {
        var sql = "SELECT * FROM billing WHERE period_start >= ? AND period_start < ?"
        var args: [SQLValue] = [.integer(from ?? Int64.min), .integer(to ?? Int64.max)]
        if let vm {
            sql += " AND (vm_uuid = ? OR vm_name = ?)"
            args += [.text(vm), .text(vm)]
        }
        sql += " ORDER BY period_start, vm_uuid, disk, host, ledger"
        var out: [FleetUsage] = []
        var index: [String: Int] = [:]
        for row in try await database.query(sql, args) {
            let u = try usage(row)
            let key = [u.host, u.usage.key.vmUUID, u.usage.key.disk, String(u.usage.periodStart)].joined(separator: "\u{1F}")
            guard let i = index[key] else {
                index[key] = out.count
                out.append(u)
                continue
            }
            let (sum, overflow) = out[i].usage.usage.addingReportingOverflow(u.usage.usage)
            let (samples, samplesOverflow) = out[i].usage.samples.addingReportingOverflow(u.usage.samples)
            guard overflow.isEmpty, !samplesOverflow else {
                throw FleetStoreError("fleet store \(database.location): the usage of \(u.usage.key.vmUUID) disk \(u.usage.key.disk) on \(u.host) "
                    + "in the period at \(u.usage.periodStart) passes 2^64 - 1 over its ledgers (\((overflow.map(\.name) + (samplesOverflow ? ["samples"] : [])).joined(separator: ", ")))")
            }
            out[i].usage.usage = sum
            out[i].usage.samples = samples
        }
        return out
    }

    /// The same, summed over hosts: one row per VM, disk and period (a VM that moved in a period).
    public static func byVM(_ rows: [FleetUsage]) throws(FleetStoreError) -> [PeriodUsage] {
        var out: [PeriodUsage] = []
        var index: [String: Int] = [:]
        for r in rows {
            let key = [r.usage.key.vmUUID, r.usage.key.disk, String(r.usage.periodStart)].joined(separator: "\u{1F}")
            guard let i = index[key] else {
                index[key] = out.count
                out.append(r.usage)
                continue
            }
            let (sum, overflow) = out[i].usage.addingReportingOverflow(r.usage.usage)
            let (samples, samplesOverflow) = out[i].samples.addingReportingOverflow(r.usage.samples)
            guard overflow.isEmpty, !samplesOverflow else {
                throw FleetStoreError("the usage of \(r.usage.key.vmUUID) disk \(r.usage.key.disk) in the period at \(r.usage.periodStart) passes 2^64 - 1 over its hosts")
            }
            out[i].usage = sum
            out[i].samples = samples
        }
        return out
    }

    func usage(_ row: SQLRow) throws(FleetStoreError) -> FleetUsage {
        guard let host = row["host"]?.text, let uuid = row["vm_uuid"]?.text, let disk = row["disk"]?.text, let start = row["period_start"]?.integer,
              let end = row["period_end"]?.integer, end > start, let name = row["vm_name"]?.text, let path = row["disk_path"]?.text,
              let samples = row["samples"]?.integer, samples >= 0 else {
            throw invalid("billing", "vm \(row["vm_uuid"]?.text ?? "?")", "a host, VM, disk, period and sample count")
        }
        var c = BlockCounters()
        for counter in IOCounter.allCases {
            guard let text = row[counter.name]?.text, let v = UInt64(text), String(v) == text else {
                throw invalid("billing", "vm \(uuid) disk \(disk) period \(start) on \(host)", "\(counter.name) as the digits of 0 to 18446744073709551615")
            }
            c[counter] = v
        }
        return FleetUsage(host: host, usage: PeriodUsage(key: DiskKey(vmUUID: uuid, disk: disk), vmName: name, diskPath: path,
                                                         periodStart: start, periodEnd: end, usage: c, samples: Int(samples)))
    }

    // MARK: helpers

    func invalid(_ table: String, _ row: String, _ expected: String) -> FleetStoreError {
        FleetStoreError("fleet store \(database.location): table \(table), \(row): expected \(expected)")
    }

    static func real(_ v: Double?) -> SQLValue {
        guard let v, v.isFinite else { return .null }
        return .real(v)
    }

    static func json(_ v: JSONValue?) -> SQLValue {
        v.map { .text(JSONText.serialize($0)) } ?? .null
    }

    static func parsed(_ v: SQLValue?) -> JSONValue? {
        guard let text = v?.text else { return nil }
        return try? JSONParser.parse(Array(text.utf8))
    }

    /// A status change's number within its VM: microseconds of its time, which only a clock
    /// that goes back could repeat (then the repeat is kept out, not a second row).
    static func sequence(_ at: Double) -> Int64 {
        guard at.isFinite, at > 0, at < 9e12 else { return 0 }
        return Int64(at * 1_000_000)
    }
}
