package spec

import (
	"strings"
	"testing"
)

func TestUpdateConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte(`{"update": {"healthySeconds": 12}}`), "nodeboot.json")
	if err != nil || cfg.Update.HealthySeconds != 12 {
		t.Fatalf("%+v, %v", cfg, err)
	}
	for doc, want := range map[string]string{
		`{"update": {"healthySeconds": 0}}`:      "from 1 to 3600",
		`{"update": {"healthySeconds": 1.5}}`:    "from 1 to 3600",
		`{"update": {"healthySeconds": "30"}}`:   "integer",
		`{"update": {"healthySeconds": 100000}}`: "from 1 to 3600",
		`{"update": {"healthy": 30}}`:            "healthy",
		`{"update": 30}`:                         "object",
	} {
		_, err := ParseConfig([]byte(doc), "nodeboot.json")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", doc, err, want)
		}
	}
}
