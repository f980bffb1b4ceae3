/// The times `vmpulse billing` takes for `--from` and `--to`, parsed strictly: a date
/// that does not exist (`2026-02-30`, `T25:61:61Z`) is an error, never normalised into
/// another day, because a billing range that silently moves bills the wrong hours.
///
/// Accepted (ASCII only, at most `maxLength` characters):
/// - `YYYY-MM-DD`: midnight UTC of that day;
/// - `YYYY-MM-DDTHH:MM:SS`: UTC;
/// - `YYYY-MM-DDTHH:MM:SSZ`;
/// - `YYYY-MM-DDTHH:MM:SS+HH:MM` or `-HH:MM`: an offset from UTC, up to 23:59.
///
/// Years 0000 to 9999 (proleptic Gregorian calendar). Refused: `24:00:00` and the leap
/// second `23:59:60` (Unix time has neither), fractions of a second (billing periods
/// are whole seconds), lower-case `t`/`z`, a space instead of `T`.
public enum BillingDate {
    /// Longer input is refused before it is looked at.
    public static let maxLength = 64

    /// What the error messages list.
    public static let acceptedForms = "YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS (UTC), YYYY-MM-DDTHH:MM:SSZ or YYYY-MM-DDTHH:MM:SS+HH:MM "
        + "(e.g. 2026-11-22, 2026-11-22T07:00:00Z, 2026-11-22T08:00:00+01:00)"

    /// Seconds since 1970-01-01T00:00:00Z of `text`, or why it is not one of the accepted forms.
    /// Pure and total: never traps, whatever the input.
    public static func parse(_ text: String) throws(BillingDateError) -> Int64 {
        let bytes = Array(text.utf8.prefix(maxLength + 1))
        func fail(_ reason: String) -> BillingDateError { BillingDateError(value: text, reason: reason) }
        guard !bytes.isEmpty else { throw fail("it is empty") }
        guard bytes.count <= maxLength else { throw fail("it is longer than \(maxLength) characters") }
        var scanner = Scanner(bytes: bytes)

        let year = try scanner.number(digits: 4, "the year (4 digits)").get(or: fail)
        try scanner.expect(UInt8(ascii: "-"), "'-' after the year").get(or: fail)
        let month = try scanner.number(digits: 2, "the month (2 digits)").get(or: fail)
        try scanner.expect(UInt8(ascii: "-"), "'-' after the month").get(or: fail)
        let day = try scanner.number(digits: 2, "the day (2 digits)").get(or: fail)
        guard (1...12).contains(month) else { throw fail("month \(two(month)) does not exist (01 to 12)") }
        let monthLength = daysIn(month: month, year: year)
        guard (1...monthLength).contains(day) else {
            throw fail("day \(two(day)) does not exist: \(monthNames[Int(month) - 1]) \(four(year)) has \(monthLength) days")
        }
        let days = daysFromCivil(year: year, month: month, day: day)
        guard !scanner.atEnd else { return days * 86_400 }

        try scanner.expect(UInt8(ascii: "T"), "'T' between the date and the time").get(or: fail)
        let hour = try scanner.number(digits: 2, "the hour (2 digits)").get(or: fail)
        try scanner.expect(UInt8(ascii: ":"), "':' after the hour").get(or: fail)
        let minute = try scanner.number(digits: 2, "the minutes (2 digits)").get(or: fail)
        try scanner.expect(UInt8(ascii: ":"), "':' after the minutes").get(or: fail)
        let second = try scanner.number(digits: 2, "the seconds (2 digits)").get(or: fail)
        if hour == 24 { throw fail("hour 24 is not accepted: write the next day's 00:00:00") }
        guard hour < 24 else { throw fail("hour \(two(hour)) does not exist (00 to 23)") }
        guard minute < 60 else { throw fail("minute \(two(minute)) does not exist (00 to 59)") }
        if second == 60 { throw fail("second 60 (a leap second) is not accepted: Unix time has none; write :59 or the next minute") }
        guard second < 60 else { throw fail("second \(two(second)) does not exist (00 to 59)") }
        let local = days * 86_400 + hour * 3_600 + minute * 60 + second
        guard let zone = scanner.next() else { return local }

        switch zone {
        case UInt8(ascii: "Z"):
            guard scanner.atEnd else { throw fail(scanner.unexpected("nothing after 'Z'")) }
            return local
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            let offsetHour = try scanner.number(digits: 2, "the offset's hours (2 digits)").get(or: fail)
            try scanner.expect(UInt8(ascii: ":"), "':' in the offset (+HH:MM)").get(or: fail)
            let offsetMinute = try scanner.number(digits: 2, "the offset's minutes (2 digits)").get(or: fail)
            guard scanner.atEnd else { throw fail(scanner.unexpected("nothing after the offset")) }
            guard offsetHour < 24, offsetMinute < 60 else {
                throw fail("offset \(two(offsetHour)):\(two(offsetMinute)) does not exist (up to 23:59)")
            }
            let offset = offsetHour * 3_600 + offsetMinute * 60
            return zone == UInt8(ascii: "+") ? local - offset : local + offset
        case UInt8(ascii: "."), UInt8(ascii: ","):
            throw fail("fractions of a second are not accepted")
        default:
            scanner.back()
            throw fail(scanner.unexpected("'Z', '+HH:MM', '-HH:MM' or the end"))
        }
    }

    /// Checks a `[from, to)` range: when both ends are given, `from` must come before `to`
    /// (an empty or inverted range selects nothing, which is never what was meant).
    public static func checkRange(from: Int64?, to: Int64?, fromText: String, toText: String) throws(BillingDateError) {
        guard let from, let to, from >= to else { return }
        let what = from == to ? "an empty range" : "an inverted range"
        throw BillingDateError(
            message: "--from \(BillingDateError.shown(fromText)) is not before --to \(BillingDateError.shown(toText)): \(what) "
                + "(periods starting at or after --from and before --to are selected); give a --to after --from")
    }

    static let monthNames = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
                             "October", "November", "December"]

    static func isLeap(_ year: Int64) -> Bool { year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) }

    static func daysIn(month: Int64, year: Int64) -> Int64 {
        switch month {
        case 2: return isLeap(year) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Days since 1970-01-01 (Howard Hinnant's algorithm); year 0...9999 keeps every step small.
    static func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
    static func four(_ v: Int64) -> String { String(String(v + 10_000).dropFirst()) }

    /// Reads fixed-width ASCII fields.
    struct Scanner {
        let bytes: [UInt8]
        var position = 0

        var atEnd: Bool { position >= bytes.count }

        mutating func next() -> UInt8? {
            guard position < bytes.count else { return nil }
            defer { position += 1 }
            return bytes[position]
        }

        mutating func back() { position -= 1 }

        /// `digits` ASCII digits (at most 4, so the value fits anywhere).
        mutating func number(digits: Int, _ what: String) -> Result<Int64, Expected> {
            var value: Int64 = 0
            for _ in 0..<digits {
                guard let b = next() else { return .failure(Expected(text: unexpectedAt(bytes.count, what))) }
                guard b >= UInt8(ascii: "0"), b <= UInt8(ascii: "9") else {
                    return .failure(Expected(text: unexpectedAt(position - 1, what)))
                }
                value = value * 10 + Int64(b - UInt8(ascii: "0"))
            }
            return .success(value)
        }

        mutating func expect(_ byte: UInt8, _ what: String) -> Result<Void, Expected> {
            guard let b = next() else { return .failure(Expected(text: unexpectedAt(bytes.count, what))) }
            guard b == byte else { return .failure(Expected(text: unexpectedAt(position - 1, what))) }
            return .success(())
        }

        /// "expected X at character N, found 'c'" (or "... found the end").
        func unexpectedAt(_ index: Int, _ what: String) -> String {
            guard index >= 0, index < bytes.count else { return "expected \(what) at character \(bytes.count + 1), found the end" }
            let b = bytes[index]
            let found = b >= 0x20 && b < 0x7f ? "'\(Character(Unicode.Scalar(b)))'" : "byte 0x\(String(b, radix: 16))"
            return "expected \(what) at character \(index + 1), found \(found)"
        }

        func unexpected(_ what: String) -> String { unexpectedAt(position, what) }
    }

    struct Expected: Error {
        var text: String
    }
}

extension Result where Failure == BillingDate.Expected {
    /// The value, or the parse error built from what was expected.
    func get(or fail: (String) -> BillingDateError) throws(BillingDateError) -> Success {
        switch self {
        case .success(let v): return v
        case .failure(let e): throw fail(e.text)
        }
    }
}

/// A `--from`/`--to` value that is not one of `BillingDate`'s forms, or a range that selects nothing.
public struct BillingDateError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The whole message, naming the value and the accepted forms.
    public var message: String

    public init(message: String) {
        self.message = message
    }

    init(value: String, reason: String) {
        message = "\(Self.shown(value)) is not a valid time: \(reason); accepted: \(BillingDate.acceptedForms)"
    }

    public var description: String { message }

    /// The value quoted for a message: control characters escaped, cut after 40 characters.
    static func shown(_ value: String) -> String {
        var out = ""
        var count = 0
        for scalar in value.unicodeScalars {
            if count == 40 { return "'" + out + "…' (\(value.unicodeScalars.count) characters)" }
            count += 1
            if scalar.value < 0x20 || scalar.value == 0x7f || scalar == "'" || scalar == "\\" {
                out += "\\u{\(String(scalar.value, radix: 16))}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return "'" + out + "'"
    }
}
