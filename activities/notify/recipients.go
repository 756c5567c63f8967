package notify

import (
	"slices"
	"strings"

	"github.com/kiln-build/kiln/workflows"
)

// RecipientsInput is what recipient resolution needs.
type RecipientsInput struct {
	// Only, if set, replaces everything else.
	Only []string
	// Additional are added to the owners.
	Additional []string
	// Codeowners is the repository's CODEOWNERS at the build's commit; nil
	// when it has none.
	Codeowners *Codeowners
	// Changed are the paths the build's commits changed; without them, the
	// default "*" owners are notified.
	Changed []string
	// Handles maps @user and @org/team handles to e-mail addresses.
	Handles map[string]string
}

// Recipients are the resolved addresses, and the handles that could not be
// resolved, which the mail's footer and the log report: ResolveRecipients'
// result.
type Recipients = workflows.MailRecipients

// Resolve applies Garden Linux's rules: Only replaces everything;
// otherwise the CODEOWNERS owners of the changed paths (or the default "*"
// owners), with e-mail addresses taken as they are and handles mapped
// through Handles, plus Additional. Addresses are deduplicated ignoring
// case, keeping the first spelling, and sorted.
func Resolve(in RecipientsInput) Recipients {
	var out Recipients
	seen := map[string]bool{}
	add := func(addr string) {
		addr = strings.TrimSpace(addr)
		if addr == "" || seen[strings.ToLower(addr)] {
			return
		}
		seen[strings.ToLower(addr)] = true
		out.To = append(out.To, addr)
	}
	if len(in.Only) > 0 {
		for _, a := range in.Only {
			add(a)
		}
		sortFold(out.To)
		return out
	}
	var owners []string
	if in.Codeowners != nil {
		matched := false
		for _, p := range in.Changed {
			if o, ok := in.Codeowners.Owners(p); ok {
				matched = true
				owners = append(owners, o...)
			}
		}
		if !matched {
			owners = in.Codeowners.Default()
		}
	}
	unresolved := map[string]bool{}
	for _, o := range owners {
		if !strings.HasPrefix(o, "@") {
			add(o)
			continue
		}
		if addr, ok := lookupFold(in.Handles, o); ok {
			add(addr)
		} else if !unresolved[strings.ToLower(o)] {
			unresolved[strings.ToLower(o)] = true
			out.Unresolved = append(out.Unresolved, o)
		}
	}
	for _, a := range in.Additional {
		add(a)
	}
	sortFold(out.To)
	slices.Sort(out.Unresolved)
	return out
}

func lookupFold(m map[string]string, k string) (string, bool) {
	if v, ok := m[k]; ok {
		return v, true
	}
	for mk, v := range m {
		if strings.EqualFold(mk, k) {
			return v, true
		}
	}
	return "", false
}

func sortFold(s []string) {
	slices.SortFunc(s, func(a, b string) int { return strings.Compare(strings.ToLower(a), strings.ToLower(b)) })
}
