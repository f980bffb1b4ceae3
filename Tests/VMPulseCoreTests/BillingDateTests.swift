import Testing
import VMPulseCore

/// `BillingDate.parse`: every bound of the accepted forms, and the errors for everything else.
@Suite struct BillingDateTests {
    func seconds(_ text: String) throws -> Int64 {
        try BillingDate.parse(text)
    }

    func error(_ text: String) -> String? {
        do throws(BillingDateError) {
            _ = try BillingDate.parse(text)
            return nil
        } catch {
            return error.message
        }
    }

    @Test(arguments: [
        ("1970-01-01", 0),
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T00:00:00", 0),
        ("2026-11-22", 1_795_305_600),
        ("2026-11-22T07:00:00Z", 1_795_330_800),
        ("2026-11-22T08:00:00+01:00", 1_795_330_800),
        ("2026-11-22T06:30:00-00:30", 1_795_330_800),
        ("2026-11-22T07:00:00-00:00", 1_795_330_800),
        ("2026-11-22T23:59:59+23:59", 1_795_305_600 + 86_399 - 86_340),
        ("2026-11-22T00:00:00-23:59", 1_795_305_600 + 86_340),
        ("2028-02-29", 1_835_395_200),
        ("2000-02-29T12:00:00Z", 951_825_600),
        ("1969-12-31T23:59:59Z", -1),
        ("0000-01-01", -62_167_219_200),
        ("9999-12-31T23:59:59Z", 253_402_300_799),
        ("2026-12-31T23:59:59Z", 1_798_761_599),
        ("2026-01-31", 1_769_817_600),
        ("2026-04-30", 1_777_507_200),
    ] as [(String, Int64)])
    func validTimes(text: String, expected: Int64) throws {
        #expect(try seconds(text) == expected, "\(text)")
    }

    @Test(arguments: [
        ("2026-02-29", "day 29 does not exist: February 2026 has 28 days"),
        ("2026-02-30", "day 30 does not exist: February 2026 has 28 days"),
        ("1900-02-29", "February 1900 has 28 days"),
        ("2100-02-29", "February 2100 has 28 days"),
        ("2026-04-31", "April 2026 has 30 days"),
        ("2026-01-32", "January 2026 has 31 days"),
        ("2026-01-00", "day 00 does not exist"),
        ("2026-00-10", "month 00 does not exist"),
        ("2026-13-01", "month 13 does not exist"),
        ("2026-11-22T25:61:61Z", "hour 25 does not exist"),
        ("2026-11-22T23:60:00Z", "minute 60 does not exist"),
        ("2026-11-22T23:59:61Z", "second 61 does not exist"),
        ("2026-11-22T24:00:00Z", "hour 24 is not accepted"),
        ("2026-12-31T23:59:60Z", "second 60 (a leap second) is not accepted"),
        ("2026-11-22T07:00:00+24:00", "offset 24:00 does not exist"),
        ("2026-11-22T07:00:00+01:60", "offset 01:60 does not exist"),
        ("2026-11-22T07:00:00.5Z", "fractions of a second are not accepted"),
        ("2026-11-22T07:00:00,5Z", "fractions of a second are not accepted"),
        ("", "it is empty"),
        ("garbage", "expected the year (4 digits) at character 1, found 'g'"),
        ("20261122", "expected '-' after the year at character 5, found '1'"),
        ("26-11-22", "expected the year (4 digits) at character 3, found '-'"),
        ("12026-11-22", "expected '-' after the year at character 5"),
        ("-2026-11-22", "expected the year (4 digits) at character 1, found '-'"),
        ("+2026-11-22", "found '+'"),
        ("2026-11-2", "expected the day (2 digits) at character 10, found the end"),
        ("2026-11-22T", "expected the hour (2 digits) at character 12, found the end"),
        ("2026-11-22T07:00", "expected ':' after the minutes at character 17, found the end"),
        ("2026-11-22 07:00:00Z", "expected 'T' between the date and the time at character 11, found ' '"),
        ("2026-11-22t07:00:00z", "found 't'"),
        ("2026-11-22T07:00:00z", "expected 'Z', '+HH:MM', '-HH:MM' or the end at character 20, found 'z'"),
        ("2026-11-22T07:00:00ZZ", "expected nothing after 'Z' at character 21, found 'Z'"),
        ("2026-11-22T07:00:00+0100", "expected ':' in the offset (+HH:MM) at character 23, found '0'"),
        ("2026-11-22T07:00:00+01", "found the end"),
        ("2026-11-22T07:00:00+01:00:00", "expected nothing after the offset"),
        ("2026-11-22\n", "expected 'T' between the date and the time at character 11, found byte 0xa"),
        ("２０２６-11-22", "expected the year (4 digits) at character 1, found byte 0xef"),
        ("٢٠٢٦-11-22", "found byte 0xd9"),
        ("2026-11-22T07:00:00\u{0}", "found byte 0x0"),
    ])
    func invalidTimesAreRefusedWithTheReason(text: String, reason: String) {
        let message = error(text)
        #expect(message?.contains(reason) == true, "\(text): \(message ?? "accepted")")
        #expect(message?.contains("accepted: YYYY-MM-DD") == true)
    }

    @Test func theErrorNamesTheValueEscapedAndShortened() {
        #expect(error("2026-02-30")?.hasPrefix("'2026-02-30' is not a valid time: ") == true)
        #expect(error("2026-11-22\n07")?.hasPrefix("'2026-11-22\\u{a}07' is not a valid time") == true)
        let long = String(repeating: "9", count: 10_000)
        let message = error(long) ?? ""
        #expect(message.contains("longer than 64 characters"))
        #expect(message.contains("…' (10000 characters)"))
        #expect(message.utf8.count < 400)
        // At the limit the length is fine and the content is what is wrong.
        #expect(error(String(repeating: "9", count: 64))?.contains("expected '-' after the year") == true)
        #expect(error("2026-11-22T07:00:00+01:00" + String(repeating: " ", count: 40))?.contains("longer than") == true)
    }

    @Test func everyDayOfFourHundredYearsIsAcceptedOnceAndInOrder() throws {
        // 2000-01-01 to 2399-12-31: each valid date is exactly one day after the one before.
        var previous = try seconds("1999-12-31")
        for year in 2000..<2400 {
            for month in 1...12 {
                for day in 1...31 {
                    let text = "\(year)-\(month < 10 ? "0" : "")\(month)-\(day < 10 ? "0" : "")\(day)"
                    guard let value = try? seconds(text) else { continue }
                    #expect(value == previous + 86_400, "\(text)")
                    previous = value
                }
            }
        }
        #expect(previous == (try seconds("2399-12-31")))
        #expect(previous - (try seconds("1999-12-31")) == 146_097 * 86_400)  // 400 Gregorian years
    }

    @Test func aRangeMustSelectSomething() throws {
        func check(_ from: Int64?, _ to: Int64?) -> String? {
            do throws(BillingDateError) {
                try BillingDate.checkRange(from: from, to: to, fromText: "A", toText: "B")
                return nil
            } catch {
                return error.message
            }
        }
        #expect(check(0, 1) == nil)
        #expect(check(nil, 1) == nil)
        #expect(check(1, nil) == nil)
        #expect(check(nil, nil) == nil)
        #expect(check(5, 5)?.contains("--from 'A' is not before --to 'B': an empty range") == true)
        #expect(check(6, 5)?.contains("an inverted range") == true)
    }
}
