package spec

import (
	"math"
	"strconv"
)

// UpdateConfig is nodeboot.json's "update": how an OS update's trial boot
// is judged (docs/updates.md).
type UpdateConfig struct {
	// HealthySeconds is how long every app must stay healthy on the trial
	// boot before the update is committed; 0 means the default, 30.
	HealthySeconds int `json:"healthySeconds,omitempty"`
}

// MaxHealthySeconds bounds update.healthySeconds: a trial longer than an
// hour leaves the node unable to take the next update for that long.
const MaxHealthySeconds = 3600

var updateKeys = []string{"healthySeconds"}

func (c *configChecker) updateConfig(v *jval, p jsonPath) UpdateConfig {
	var u UpdateConfig
	members, ok := c.object(v, p)
	if !ok {
		return u
	}
	for _, m := range members {
		if !c.known(m, p, updateKeys, nil) {
			continue
		}
		kp := p.key(m.key)
		switch m.key {
		case "healthySeconds":
			if m.val.kind != kindNumber {
				c.wrongType(kp, "integer", m.val)
				break
			}
			f, err := strconv.ParseFloat(string(m.val.num), 64)
			if err != nil || math.IsInf(f, 0) || f != math.Trunc(f) || f < 1 || f > MaxHealthySeconds {
				c.fail(kp, "%s is not a number of seconds from 1 to %d", m.val.num, MaxHealthySeconds)
				break
			}
			u.HealthySeconds = int(f)
		}
	}
	return u
}
