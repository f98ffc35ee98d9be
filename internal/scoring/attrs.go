package scoring

import (
	"time"

	"github.com/retention-dev/retention-operator/internal/customer"
)

// kv is one attribute of a customer record in transit to its shard.
type kv struct {
	key string
	val any
}

// attrStore keeps customer attributes and contacts by customer index in
// typed columns (one per attribute name), not a map per customer: a
// million customers with ten attributes cost about what their values do.
type attrStore struct {
	cols     []*attrCol
	byName   map[string]int
	contacts paged[customer.Contact]
	hasCont  bitset
	// known marks customers that arrived through a customer record.
	known bitset
}

type attrKind uint8

const (
	kindUnset attrKind = iota
	kindString
	kindNumber
	kindBool
	kindTime
)

type attrCol struct {
	name  string
	kind  attrKind
	set   bitset
	strs  paged[string]
	nums  paged[float64]
	bools bitset
	times paged[time.Time]
	// other holds values whose type differs from the column's.
	other map[int32]any
}

// put replaces the customer's attributes and contact (the last record wins).
func (s *attrStore) put(idx int32, kvs []kv, contact *customer.Contact) {
	if s.byName == nil {
		s.byName = map[string]int{}
	}
	s.known.set(idx)
	for _, c := range s.cols {
		c.set.unset(idx)
		if c.other != nil {
			delete(c.other, idx)
		}
	}
	for _, a := range kvs {
		ci, ok := s.byName[a.key]
		if !ok {
			ci = len(s.cols)
			s.byName[a.key] = ci
			s.cols = append(s.cols, &attrCol{name: a.key})
		}
		s.cols[ci].put(idx, a.val)
	}
	if contact != nil && *contact != (customer.Contact{}) {
		s.contacts.grow(int(idx) + 1)
		*s.contacts.at(idx) = *contact
		s.hasCont.set(idx)
	} else {
		s.hasCont.unset(idx)
	}
}

func (c *attrCol) put(idx int32, v any) {
	k := kindOf(v)
	if c.kind == kindUnset && k != kindUnset {
		c.kind = k
	}
	if k != c.kind || k == kindUnset {
		if c.other == nil {
			c.other = map[int32]any{}
		}
		c.other[idx] = v
		c.set.set(idx)
		return
	}
	n := int(idx) + 1
	switch k {
	case kindString:
		c.strs.grow(n)
		*c.strs.at(idx) = v.(string)
	case kindNumber:
		c.nums.grow(n)
		*c.nums.at(idx) = v.(float64)
	case kindBool:
		if v.(bool) {
			c.bools.set(idx)
		} else {
			c.bools.unset(idx)
		}
	case kindTime:
		c.times.grow(n)
		*c.times.at(idx) = v.(time.Time)
	}
	c.set.set(idx)
}

func kindOf(v any) attrKind {
	switch v.(type) {
	case string:
		return kindString
	case float64:
		return kindNumber
	case bool:
		return kindBool
	case time.Time:
		return kindTime
	}
	return kindUnset
}

// fill writes customer idx's attributes into m (cleared first) and returns
// its contact.
func (s *attrStore) fill(idx int32, m customer.Attributes) customer.Contact {
	clear(m)
	for _, c := range s.cols {
		if !c.set.has(idx) {
			continue
		}
		if v, ok := c.other[idx]; ok {
			m[c.name] = v
			continue
		}
		switch c.kind {
		case kindString:
			m[c.name] = *c.strs.at(idx)
		case kindNumber:
			m[c.name] = *c.nums.at(idx)
		case kindBool:
			m[c.name] = c.bools.has(idx)
		case kindTime:
			m[c.name] = *c.times.at(idx)
		}
	}
	if s.hasCont.has(idx) {
		return *s.contacts.at(idx)
	}
	return customer.Contact{}
}
