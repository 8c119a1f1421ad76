// Package uzi reads the identity out of UZI-register certificates (Dutch healthcare smartcards
// and server certificates, CPS UZI-register v10.x) and holds the OIDs and number checks the
// rest of aortagw shares.
//
// # What Parse checks
//
// Parse (and ParseWithOptions) is strict and fails closed with a sentinel error:
//
//   - exactly one subjectAltName otherName 2.5.5.5 holding an IA5String in the exact format
//     <OID CA>-<version 1NUM>-<UZI 9NUM>-<Z|N|M|S>-<subscriber 8NUM>-<role 6CHAR>-<AGB 8NUM>;
//   - the card type is derived from the issuing CA (the OID CA, looked up in a fixed table of
//     production and test CAs) and must agree with the SAN letter, with the certificate policy
//     (AUT/HND/VRT of Z/N, AUT/VRT of M, server) and with the issuer CN when it names a
//     UZI-register CA;
//   - subject serialNumber (exactly one) equals the UZI number;
//   - the role is NN.NNN for Z and 00.000 for N, M and S;
//   - the key purpose follows from the critical keyUsage extension (digitalSignature only =
//     authentication, nonRepudiation only = non-repudiation, keyEncipherment+dataEncipherment =
//     encryption, digitalSignature+keyEncipherment = server) and must agree with the policy;
//     authentication certificates must allow clientAuth, server certificates serverAuth and
//     clientAuth;
//   - a UPN otherName, when present, is <UZI>@<subscriber>; a permanentIdentifier, when
//     present, has assigner 2.16.528.1.1007.3.3 and value = subscriber number (URA).
//
// Parse does not decide trust: chain building to the configured UZI root, validity dates and
// revocation are the caller's job (package tokens, internal/mtls). A certificate from an
// attacker's look-alike CA parses fine and must be stopped by chain verification.
//
// # Test CAs
//
// Besides the four production OID CAs (2.16.528.1.1003.1.3.5.5.2 .. .5) Parse accepts the
// explicit test OIDs in TestCAOIDs, all under the UZI-register test arc 2.16.528.1.1007.99:
// 2.16.528.1.1007.99.2110 (the CIBG acceptance server CA, seen in the wild) and the aortagw
// testpki CAs 2.16.528.1.1007.99.2102 (Z), .2103 (N), .2104 (M). Other OIDs under the test arc
// are refused as unknown. Identity.Test reports a test CA; ParseOptions.ProductionOnly refuses
// them (ErrTestCA), which is what a production configuration should set.
//
// Everything in this package is stateless and safe for concurrent use.
package uzi
