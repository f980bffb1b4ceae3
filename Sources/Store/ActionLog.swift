import GRDB

/// What the heartbeat's actions did: one row per action run, in `heartbeat.sqlite` beside
/// the ledger. A file of its own, so that a degraded ledger never loses an action's
/// outcome, and an action never waits on a ledger flush. The newest `keep` rows stay.
public final class ActionLog: Sendable {
    public struct Entry: Sendable, Equatable {
        /// Unix seconds.
        public var time: Double
        public var link: String
        /// The state change that ran it (`alive->dead`).
        public var transition: String
        public var action: String
        public var succeeded: Bool
        /// A program's exit code (128 + signal when killed); nil for other actions.
        public var code: Int?
        public var detail: String

        public init(time: Double, link: String, transition: String, action: String, succeeded: Bool, code: Int?, detail: String) {
            self.time = time
            self.link = link
            self.transition = transition
            self.action = action
            self.succeeded = succeeded
            self.code = code
            self.detail = detail
        }
    }

    public let path: String
    private let queue: DatabaseQueue
    private let keep: Int

    private init(path: String, queue: DatabaseQueue, keep: Int) {
        self.path = path
        self.queue = queue
        self.keep = keep
    }

    public static func open(path: String, keep: Int = 10_000, readOnly: Bool = false) throws(LedgerError) -> ActionLog {
        var config = Configuration()
        config.busyMode = .timeout(5)
        config.readonly = readOnly
        do {
            let queue = try DatabaseQueue(path: path, configuration: config)
            if !readOnly {
                var m = DatabaseMigrator()
                m.registerMigration("v1") { db in
                    try db.execute(sql: """
                        CREATE TABLE heartbeat_actions (
                            id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, link TEXT NOT NULL, transition TEXT NOT NULL,
                            action TEXT NOT NULL, succeeded INTEGER NOT NULL, code INTEGER, detail TEXT NOT NULL)
                        """)
                    try db.execute(sql: "CREATE INDEX heartbeat_actions_link ON heartbeat_actions (link, id)")
                }
                try m.migrate(queue)
            }
            return ActionLog(path: path, queue: queue, keep: max(1, keep))
        } catch {
            throw LedgerError.from(error, path: path)
        }
    }

    public func record(_ e: Entry) throws(LedgerError) {
        do {
            try queue.write { db in
                try db.execute(sql: "INSERT INTO heartbeat_actions (time, link, transition, action, succeeded, code, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
                               arguments: [e.time, e.link, e.transition, e.action, e.succeeded, e.code, String(e.detail.prefix(4096))])
                try db.execute(sql: "DELETE FROM heartbeat_actions WHERE id <= (SELECT MAX(id) FROM heartbeat_actions) - ?", arguments: [keep])
            }
        } catch {
            throw LedgerError.from(error, path: path)
        }
    }

    /// The newest `limit` entries (of one link, or all), newest first.
    public func recent(link: String? = nil, limit: Int = 20) throws(LedgerError) -> [Entry] {
        do {
            return try queue.read { db in
                let rows = try Row.fetchAll(db, sql: """
                    SELECT time, link, transition, action, succeeded, code, detail FROM heartbeat_actions
                    WHERE ?1 IS NULL OR link = ?1 ORDER BY id DESC LIMIT ?2
                    """, arguments: [link, max(0, limit)])
                return rows.map { r in
                    Entry(time: r["time"] ?? 0, link: r["link"] ?? "", transition: r["transition"] ?? "", action: r["action"] ?? "",
                          succeeded: r["succeeded"] ?? false, code: r["code"], detail: r["detail"] ?? "")
                }
            }
        } catch {
            throw LedgerError.from(error, path: path)
        }
    }
}
