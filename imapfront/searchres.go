package imapfront

import (
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// Search implements imapserver.Session (SEARCH, UID SEARCH, ESEARCH return
// options and SEARCHRES). Criteria are evaluated by searchMailbox against
// the client view; "$" is the result last saved with RETURN (SAVE).
func (s *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (data *imap.SearchData, err error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.end("SEARCH", &err)
	v, err := s.requireSelected()
	if err != nil {
		return nil, err
	}
	c := substituteSearchRes(criteria, s.searchRes)
	uids, err := searchView(s.ctx, s.srv.opts.Store, s.user.id, v.mbox.id, v.uids, v.recent, c, time.Now())
	if err != nil {
		return nil, s.storeErr("SEARCH", targetMailbox, err)
	}
	data = &imap.SearchData{}
	var nums []uint32
	if kind == imapserver.NumKindUID {
		var set imap.UIDSet
		for _, u := range uids {
			set.AddNum(imap.UID(u))
			nums = append(nums, uint32(u))
		}
		if set == nil {
			set = imap.UIDSet{}
		}
		data.All = set
	} else {
		var set imap.SeqSet
		for _, u := range uids {
			if seq := v.seqOf(u); seq != 0 {
				set.AddNum(seq)
				nums = append(nums, seq)
			}
		}
		if set == nil {
			set = imap.SeqSet{}
		}
		data.All = set
	}
	data.Count = uint32(len(nums))
	for _, n := range nums {
		if data.Min == 0 || n < data.Min {
			data.Min = n
		}
		if n > data.Max {
			data.Max = n
		}
	}
	if options != nil && options.ReturnSave {
		s.searchRes = uids
	}
	return data, nil
}
