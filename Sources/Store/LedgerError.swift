import GRDB

/// Why the ledger cannot be used, with what a person can do about it.
public struct LedgerError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case corrupt, readOnly, full, cannotOpen, schema, other
        /// A row holds a value its column cannot hold (a negative or non-numeric counter,
        /// NULL, a time past the year 9999): the message names the table, row and column.
        case invalidRow
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    /// Maps SQLite's answer to a message naming the file and the likely fix.
    static func from(_ error: any Error, path: String) -> LedgerError {
        if let e = error as? LedgerError { return e }
        guard let db = error as? DatabaseError else { return LedgerError(.other, "ledger \(path): \(error)") }
        switch db.resultCode {
        case .SQLITE_NOTADB, .SQLITE_CORRUPT:
            return LedgerError(.corrupt, "ledger \(path) is not a valid SQLite database (corrupt?). It is left untouched; move it aside to start a new ledger, or restore it from a backup")
        case .SQLITE_READONLY, .SQLITE_PERM:
            return LedgerError(.readOnly, "ledger \(path) is read-only; make the file and its directory writable by the agent")
        case .SQLITE_FULL:
            return LedgerError(.full, "ledger \(path): the disk is full; free space (usage is kept in memory and written when there is room)")
        case .SQLITE_CANTOPEN:
            return LedgerError(.cannotOpen, "cannot open ledger \(path): check that its directory exists and is writable")
        case .SQLITE_IOERR:
            return LedgerError(.full, "ledger \(path): I/O error writing (disk full or file size limit?): \(db.message ?? "")")
        default:
            return LedgerError(.other, "ledger \(path): \(db.message ?? "\(db)")")
        }
    }
}
