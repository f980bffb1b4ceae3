import API
import HTTPTypes
import Testing

@Suite struct APIAccessTests {
    func headers(_ authorization: String?) -> HTTPFields {
        var h = HTTPFields()
        if let authorization { h[.authorization] = authorization }
        return h
    }

    @Test func withoutTokensEveryoneMayPass() {
        #expect(APIAccess().allows(headers(nil)))
        #expect(!APIAccess().requiresToken)
    }

    @Test func onlyAConfiguredBearerTokenPasses() {
        let access = APIAccess(tokens: ["0123456789abcdef-one", "0123456789abcdef-two"])
        #expect(access.requiresToken)
        #expect(access.allows(headers("Bearer 0123456789abcdef-one")))
        #expect(access.allows(headers("Bearer 0123456789abcdef-two")))
        for bad in [nil, "", "Bearer ", "Bearer 0123456789abcdef-on", "Bearer 0123456789abcdef-onex", "bearer 0123456789abcdef-one",
                    "Basic MDEyMzQ1Njc4OWFiY2RlZi1vbmU=", "Bearer " + String(repeating: "x", count: 100_000), "0123456789abcdef-one"] as [String?] {
            #expect(!access.allows(headers(bad)), "\(bad?.prefix(40) ?? "no header")")
        }
    }
}
