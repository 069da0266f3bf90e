package web_test

import (
	"html"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/meshpki/meshpki/internal/servertest"
	"github.com/meshpki/meshpki/internal/store/storetest"
)

// BenchmarkDashboardPages times the dashboard's pages against a real
// server whose store holds MESHPKI_BENCH_UI certificates (default 10,000;
// half issued, half scanned, expiries spread over a year), over HTTPS on
// loopback with a signed-in session: the overview (its counts), the
// inventory's first page, a page deep in it (by cursor), one filtered by
// name, one filtered to what expires within 7 days, and an issued
// certificate's page (its chain, sightings and audit trail; every issued
// certificate has its issuance record in the log).
func BenchmarkDashboardPages(b *testing.B) {
	n := 10_000
	if v, err := strconv.Atoi(os.Getenv("MESHPKI_BENCH_UI")); err == nil && v > 0 {
		n = v
	}
	in := servertest.Start(b, servertest.Options{})
	seeder, ok := in.Server.Store().(storetest.InventorySeeder)
	if !ok {
		b.Fatal("the store cannot seed")
	}
	storetest.SeedBenchInventory(b, seeder, n, time.Now())
	browser, _ := signIn(b, in)
	deep := get(b, browser, in.URL+"/ui/inventory")
	for range 20 { // twenty pages in
		next := nextLink.FindStringSubmatch(deep.body)
		if next == nil {
			break
		}
		deep = get(b, browser, in.URL+htmlUnescape(next[1]))
	}
	deepURL := in.URL + htmlUnescape(nextLink.FindStringSubmatch(deep.body)[1])
	for _, pg := range []struct{ name, url string }{
		{"overview", in.URL + "/ui/"},
		{"inventory-first", in.URL + "/ui/inventory"},
		{"inventory-page-21", deepURL},
		{"inventory-by-name", in.URL + "/ui/inventory?name=app-" + strconv.Itoa(n/4) + ".example.test"},
		{"inventory-within-7d", in.URL + "/ui/inventory?within=7d&active=1"},
		{"certificate", in.URL + "/ui/certificates/" + strconv.FormatInt(1<<40+int64(n/4), 16)},
	} {
		b.Run(pg.name, func(b *testing.B) {
			for b.Loop() {
				if p := get(b, browser, pg.url); p.status != http.StatusOK {
					b.Fatalf("%s: %d", pg.url, p.status)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/page")
		})
	}
}

var nextLink = regexp.MustCompile(`id="next" href="([^"]+)"`)

func htmlUnescape(s string) string { return html.UnescapeString(s) }
