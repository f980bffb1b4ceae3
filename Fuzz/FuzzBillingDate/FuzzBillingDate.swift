import FuzzSupport
import VMPulseCore

/// The billing date parser (`vmpulse billing --from/--to`) on any text: a time or a
/// `BillingDateError`, never a trap; and a time it accepts, written back as the export
/// writes times, reads as the same time.
@main enum FuzzBillingDate {
    static func main() {
        FuzzMain.run { bytes in
            let text = String(decoding: bytes, as: UTF8.self)
            let time: Int64
            do throws(BillingDateError) {
                time = try BillingDate.parse(text)
            } catch {
                _ = error.description
                return
            }
            let written = BillingFormat.isoTime(Double(time))
            // Years 1000 to 9999 are written as YYYY-MM-DDTHH:MM:SSZ (20 characters).
            guard written.utf8.count == 20 else { return }
            let reread = try? BillingDate.parse(written)
            precondition(reread == time, "\(text) is \(time), written \(written), read back as \(String(describing: reread))")
        }
    }
}
