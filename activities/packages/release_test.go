package packages_test

import (
	"os"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/activities/packages"
)

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseRelease(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		data                    string
		suite, codename, origin string
		signed                  bool
	}{
		{name: "Garden Linux's InRelease", data: string(readFile(t, "gardenlinux-1877.14.InRelease")),
			codename: "1877.14", origin: "GardenLinux", signed: true},
		{name: "Debian's Release", data: string(readFile(t, "debian-trixie.Release")),
			suite: "testing", codename: "trixie", origin: "Debian"},
		{name: "CRLF, a BOM, blank lines around, names in any case", data: "\xef\xbb\xbf\r\n\r\norigin: X\r\nSUITE: stable\r\n\r\n\r\n", suite: "stable", origin: "X"},
		{name: "dash-escaped clearsigned text", data: "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n- Codename: 1443.0\nDescription: a\n - continued\n-----BEGIN PGP SIGNATURE-----\nxx\n-----END PGP SIGNATURE-----\n",
			codename: "1443.0", signed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := packages.ParseRelease([]byte(tc.data))
			if err != nil {
				t.Fatal(err)
			}
			if r.Suite != tc.suite || r.Codename != tc.codename || r.Origin != tc.origin || r.Signed != tc.signed {
				t.Errorf("got Suite %q Codename %q Origin %q Signed %v, want %q %q %q %v", r.Suite, r.Codename, r.Origin, r.Signed, tc.suite, tc.codename, tc.origin, tc.signed)
			}
		})
	}
	r, err := packages.ParseRelease(readFile(t, "gardenlinux-1877.14.InRelease"))
	if err != nil {
		t.Fatal(err)
	}
	if sums := r.Fields["SHA256"]; strings.Count(sums, "\n") != 8 || !strings.HasSuffix(sums, "main/source/Sources.gz") {
		t.Errorf("SHA256 field, its continuation lines joined:\n%s", sums)
	}
}

func TestParseReleaseRefusesWhatIsNoReleaseFile(t *testing.T) {
	inRelease := string(readFile(t, "gardenlinux-1877.14.InRelease"))
	for _, tc := range []struct{ name, data, want string }{
		{"empty", " \n\n", "empty"},
		{"an HTML page", "<!DOCTYPE html>\n<html><body>Not Found</body></html>\n", `line 1 "<!DOCTYPE html>": not a field`},
		{"no Suite nor Codename", "Origin: X\nLabel: Y\n", "neither Suite nor Codename"},
		{"a continuation first", " Codename: x\n", "line 1 \" Codename: x\": a continuation line before any field"},
		{"two paragraphs", "Codename: a\n\nPackage: b\n", "line 2 \"\": a second paragraph"},
		{"a field twice", "Codename: a\nCodename: b\n", "line 2 \"Codename: b\": field Codename twice"},
		{"a name with a space", "Code name: a\n", "not a field"},
		{"a clearsigned file cut short", inRelease[:len(inRelease)/2], "signature block"},
		{"a line number past the armor", "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nCodename: a\nnonsense\n-----BEGIN PGP SIGNATURE-----\n", `line 5 "nonsense"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := packages.ParseRelease([]byte(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
