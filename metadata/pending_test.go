package metadata

import (
	"context"
	"reflect"
	"testing"
)

// Where each count's answer stood decides what a restart keeps: counts
// never answered are dropped, counts being answered stay unconfirmed,
// answered ones stay as they are; an unmount leaves the classification
// of the counts it leaves alone as long as it fits them.
func TestAnswersAcrossARestart(t *testing.T) {
	ctx := context.Background()
	db, path := openTemp(t)
	if err := db.CreateVolume(ctx, Volume{Name: "v"}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"answered", "answering", "recorded", "recorded", "answered"} {
		if _, err := db.AddMount(ctx, "v", id); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"answered", "answered", "answering"} {
		if err := db.MarkAnswering(ctx, "v", id); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"answered", "answered"} {
		if err := db.ConfirmMount(ctx, "v", id); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	dropped, err := db.SettleAnswers(ctx)
	if err != nil || !reflect.DeepEqual(dropped, map[string][]string{"v": {"recorded", "recorded"}}) {
		t.Fatalf("SettleAnswers dropped %v, %v", dropped, err)
	}
	m, _ := db.Mounts(ctx, "v")
	as, _ := db.Answers(ctx, "v")
	if !reflect.DeepEqual(m, Mounts{"answered": 2, "answering": 1}) || !reflect.DeepEqual(as, Answers{"answering": {Unconfirmed: 1}}) {
		t.Fatalf("after the restart: counts %v, answers %v", m, as)
	}
	if m, err := db.DropUnconfirmed(ctx, "v"); err != nil || !reflect.DeepEqual(m, Mounts{"answered": 2}) {
		t.Fatalf("DropUnconfirmed left %v, %v", m, err)
	}
	// x: one unconfirmed count (a killed answer) and dockerd's retry; its
	// Unmount leaves one count, still unconfirmed (a Remove may drop it).
	db.AddMount(ctx, "v", "x")
	db.MarkAnswering(ctx, "v", "x")
	db.SettleAnswers(ctx)
	db.AddMount(ctx, "v", "x") // answered now, in this process
	db.MarkAnswering(ctx, "v", "x")
	db.ConfirmMount(ctx, "v", "x")
	db.RemoveMount(ctx, "v", "x")
	if as, _ := db.Answers(ctx, "v"); as.Unconfirmed() != 1 {
		t.Errorf("after the Unmount of x: %v", as)
	}
	if m, _ := db.Mounts(ctx, "v"); m["x"] != 1 {
		t.Errorf("x counts %d, want 1", m["x"])
	}
}

// Counts that go down below what is unconfirmed take the unconfirmed
// ones with them.
func TestUnmountClampsAnswers(t *testing.T) {
	ctx := context.Background()
	db, _ := openTemp(t)
	db.CreateVolume(ctx, Volume{Name: "v"})
	db.AddMount(ctx, "v", "x")
	db.MarkAnswering(ctx, "v", "x")
	db.SettleAnswers(ctx)
	if as, _ := db.Answers(ctx, "v"); as.Unconfirmed() != 1 {
		t.Fatalf("answers %v", as)
	}
	if m, found, err := db.RemoveMount(ctx, "v", "x"); err != nil || !found || len(m) != 0 {
		t.Fatalf("RemoveMount: %v %v %v", m, found, err)
	}
	if as, _ := db.Answers(ctx, "v"); len(as) != 0 {
		t.Errorf("answers left after the last unmount: %v", as)
	}
}
