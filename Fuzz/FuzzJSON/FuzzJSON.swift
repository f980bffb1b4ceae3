import FuzzSupport
import VMPulseCore

/// The JSON parser (every QMP line goes through it) on any bytes: it returns a value or a
/// `JSONParseError`, never traps; and what it accepts survives a round trip through
/// `JSONText` unchanged (so the commands vmpulse writes are what it means).
@main enum FuzzJSON {
    static func main() {
        FuzzMain.run { bytes in
            let value: JSONValue
            do throws(JSONParseError) {
                value = try JSONParser.parse(bytes)
            } catch {
                precondition(error.offset >= 0 && error.offset <= bytes.count, "error offset \(error.offset) outside the input")
                _ = error.description
                return
            }
            let text = JSONText.serialize(value)
            let again: JSONValue
            do {
                again = try JSONParser.parse(Array(text.utf8))
            } catch {
                preconditionFailure("JSONText wrote what the parser refuses: \(error) in \(text)")
            }
            precondition(again == value, "round trip changed \(text)")
        }
    }
}
