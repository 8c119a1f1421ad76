package hl7

import "testing"

func BenchmarkRead(b *testing.B) {
	body := []byte(gqzg)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Read(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBuildQuery(b *testing.B) {
	p := validParams(QURXQuery)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := BuildQuery(p); err != nil {
			b.Fatal(err)
		}
	}
}
