using Lattice.Gateway.Metering;
using Lattice.Gateway.Tests.Infrastructure;
using Lattice.Protocol.Metering;

namespace Lattice.Gateway.Tests.Metering;

/// <summary>The journal file on its own: what a reopened journal finds, torn and corrupt slots, ownership of the file.</summary>
public sealed class UsageJournalTests : IDisposable
{
    private const int Slots = 16;
    private const int SlotBytes = 2048;
    private const int FileHeaderBytes = 4096;
    private const int SlotHeaderBytes = 24;

    private readonly string _dir = Path.Combine(Path.GetTempPath(), "lattice-journal-" + Guid.NewGuid().ToString("N"));

    public void Dispose() => Hosts.DeleteDataDirectory(_dir);

    private UsageJournal Open(LogSink? logs = null) => UsageJournal.Open(_dir, Slots, SlotBytes, logs?.CreateLogger("journal"));

    [Fact]
    public void Round_trip_finished_started_and_recorded_slots()
    {
        var provisional = LedgerHarness.Provisional("req_started");
        var begun = LedgerHarness.Provisional("req_finished");
        var final = LedgerHarness.NewRecord("req_finished", promptTokens: 100, completionTokens: 200) with
        {
            // Non-ASCII and escapes survive the trip.
            Model = "lattice:personal:lat_ü\"x",
            UserId = "usr_1",
            GrantId = null,
        };
        var recorded = LedgerHarness.NewRecord("req_recorded", status: "model_not_found") with { ServedBy = null, Usage = Usage.None };
        using (var journal = Open())
        {
            Assert.True(journal.TryBegin(provisional, out _));
            Assert.True(journal.TryBegin(begun, out var slot));
            Assert.True(journal.TryFinish(slot, final));
            Assert.True(journal.TryRecord(recorded, out _));
            Assert.Equal(Slots - 3, journal.FreeSlots);
        }

        using var reopened = Open();
        var found = reopened.TakeLeftOvers().ToDictionary(r => r.Record.RequestId);
        Assert.Equal(3, found.Count);
        Assert.Equal(final, found["req_finished"].Record);
        Assert.True(found["req_finished"].Finished);
        Assert.Equal(recorded, found["req_recorded"].Record);
        Assert.True(found["req_recorded"].Finished);
        Assert.Equal(provisional, found["req_started"].Record);
        Assert.False(found["req_started"].Finished);
        // Left-over slots are not handed out until the ledger has committed and freed them.
        Assert.Equal(Slots - 3, reopened.FreeSlots);
        foreach (var record in found.Values)
        {
            reopened.Free(record.Slot);
        }
        Assert.Equal(Slots, reopened.FreeSlots);
        Assert.Empty(reopened.TakeLeftOvers());
    }

    [Fact]
    public void Slots_are_handed_out_from_the_start_of_the_file_and_the_last_freed_first()
    {
        // So the slots in use stay few and warm in the CPU's caches instead of every request writing the next cold one.
        using var journal = Open();
        Assert.True(journal.TryBegin(LedgerHarness.Provisional("req_1"), out var first));
        Assert.True(journal.TryBegin(LedgerHarness.Provisional("req_2"), out var second));
        Assert.Equal((0, 1), (first, second));
        journal.Free(first);
        Assert.True(journal.TryRecord(LedgerHarness.NewRecord("req_3"), out var third));
        Assert.Equal(first, third);
        Assert.Equal(Slots - 2, journal.FreeSlots);
    }

    [Fact]
    public void A_started_request_is_recovered_as_interrupted_whatever_status_it_was_journaled_with()
    {
        using (var journal = Open())
        {
            Assert.True(journal.TryBegin(LedgerHarness.NewRecord("req_1", UsageStatuses.Ok), out _));
        }
        using var reopened = Open();
        Assert.Equal(UsageStatuses.Interrupted, Assert.Single(reopened.TakeLeftOvers()).Record.Status);
    }

    [Fact]
    public void A_slot_with_a_flipped_payload_byte_is_skipped_and_logged()
    {
        int corrupt;
        using (var journal = Open())
        {
            Assert.True(journal.TryRecord(LedgerHarness.NewRecord("req_good"), out _));
            Assert.True(journal.TryRecord(LedgerHarness.NewRecord("req_bad"), out corrupt));
        }
        FlipByte(corrupt, SlotHeaderBytes + 20);

        var logs = new LogSink();
        using var reopened = Open(logs);
        var found = reopened.TakeLeftOvers();
        Assert.Equal("req_good", Assert.Single(found).Record.RequestId);
        Assert.Contains(logs.Entries, e => e.EventId == 8001);
        // The corrupt slot is freed at once; the good one waits for its commit.
        Assert.Equal(Slots - 1, reopened.FreeSlots);
    }

    [Fact]
    public void A_finished_slot_whose_final_record_is_damaged_falls_back_to_its_provisional_record()
    {
        int slot;
        int provisionalLength;
        using (var journal = Open())
        {
            Assert.True(journal.TryBegin(LedgerHarness.Provisional("req_1"), out slot));
            Assert.True(journal.TryFinish(slot, LedgerHarness.NewRecord("req_1")));
        }
        provisionalLength = BitConverter.ToInt32(ReadSlot(slot), 4);
        FlipByte(slot, SlotHeaderBytes + provisionalLength + 5);

        var logs = new LogSink();
        using var reopened = Open(logs);
        var found = Assert.Single(reopened.TakeLeftOvers());
        Assert.False(found.Finished);
        Assert.Equal(LedgerHarness.Provisional("req_1"), found.Record);
        Assert.Contains(logs.Entries, e => e.EventId == 8002);
    }

    [Fact]
    public void A_torn_write_leaves_the_slot_as_it_was()
    {
        // A kill while the final record was being copied: payload bytes written, state byte not yet. The slot still says
        // started and its provisional record is intact.
        int slot;
        using (var journal = Open())
        {
            Assert.True(journal.TryBegin(LedgerHarness.Provisional("req_1"), out slot));
        }
        var bytes = ReadSlot(slot);
        var provisionalLength = BitConverter.ToInt32(bytes, 4);
        using (var file = new FileStream(Path.Combine(_dir, UsageJournal.FileName), FileMode.Open, FileAccess.Write))
        {
            file.Position = FileHeaderBytes + (long)slot * SlotBytes + SlotHeaderBytes + provisionalLength;
            file.Write(Enumerable.Repeat((byte)'x', 300).ToArray());
        }
        using var reopened = Open();
        var found = Assert.Single(reopened.TakeLeftOvers());
        Assert.Equal(UsageStatuses.Interrupted, found.Record.Status);
    }

    [Fact]
    public void A_record_too_large_for_a_slot_is_refused_and_the_slot_stays_free()
    {
        using var journal = Open();
        var huge = LedgerHarness.NewRecord("req_1") with { Model = new string('m', SlotBytes) };
        Assert.False(journal.TryRecord(huge, out var slot));
        Assert.Equal(-1, slot);
        Assert.False(journal.TryBegin(huge, out _));
        Assert.Equal(Slots, journal.FreeSlots);
    }

    [Fact]
    public void A_second_owner_in_the_same_directory_gets_its_own_file()
    {
        using var first = Open();
        using var second = Open();
        Assert.Equal(Path.Combine(_dir, UsageJournal.FileName), first.Path);
        Assert.Equal(Path.Combine(_dir, "usage-journal-1.bin"), second.Path);
    }

    [Fact]
    public void A_journal_holding_records_keeps_its_geometry_until_it_is_empty()
    {
        using (var journal = Open())
        {
            Assert.True(journal.TryRecord(LedgerHarness.NewRecord("req_1"), out _));
        }
        using (var kept = UsageJournal.Open(_dir, Slots * 2, SlotBytes * 2))
        {
            Assert.Equal(Slots, kept.SlotCount);
            var found = Assert.Single(kept.TakeLeftOvers());
            kept.Free(found.Slot);
        }
        using var reshaped = UsageJournal.Open(_dir, Slots * 2, SlotBytes * 2);
        Assert.Equal(Slots * 2, reshaped.SlotCount);
        Assert.Equal(SlotBytes * 2, reshaped.SlotBytes);
        Assert.Equal(Slots * 2, reshaped.FreeSlots);
    }

    // A page of a shared mapping over a hole in the file gets its disk block only when the process first writes to it; on a
    // full disk that store is a SIGBUS, and the gateway dies (AccessViolationException in UsageJournal.Write, found by
    // `bench --faults` with the data directory on a full ext4). So the journal's blocks are allocated when it opens, where
    // a full disk is an IOException at start-up. Holes are found with lseek(SEEK_HOLE) (Linux).
    [Fact]
    public void A_new_journal_has_every_block_allocated_before_it_is_mapped()
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }
        string path;
        using (var journal = Open())
        {
            path = journal.Path;
        }
        Assert.Equal(new FileInfo(path).Length, FirstHole(path));
    }

    [Fact]
    public void A_sparse_journal_left_by_an_earlier_gateway_is_filled_in_and_keeps_its_records()
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }
        var record = LedgerHarness.NewRecord("req_kept");
        string path;
        using (var journal = Open())
        {
            Assert.True(journal.TryRecord(record, out _));
            path = journal.Path;
        }
        // The same bytes as a sparse file: only the pages holding something are written, the rest are holes.
        var bytes = File.ReadAllBytes(path);
        File.Delete(path);
        using (var sparse = new FileStream(path, FileMode.CreateNew, FileAccess.Write))
        {
            sparse.SetLength(bytes.Length);
            for (var page = 0; page < bytes.Length; page += 4096)
            {
                var span = bytes.AsSpan(page, Math.Min(4096, bytes.Length - page));
                if (span.ContainsAnyExcept((byte)0))
                {
                    RandomAccess.Write(sparse.SafeFileHandle, span, page);
                }
            }
        }
        Assert.True(FirstHole(path) < bytes.Length, "the copy should have holes (is SEEK_HOLE supported here?)");

        using (var reopened = Open())
        {
            Assert.Equal(record, Assert.Single(reopened.TakeLeftOvers()).Record);
        }
        Assert.Equal(bytes.Length, FirstHole(path));
        Assert.Equal(bytes, File.ReadAllBytes(path));
    }

    private const int SeekHole = 4;

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
#pragma warning disable SYSLIB1054 // One call in a test; no marshalling to generate.
    private static extern long lseek(int fd, long offset, int whence);
#pragma warning restore SYSLIB1054

    /// <summary>The offset of the file's first hole (its length when it has none).</summary>
    private static long FirstHole(string path)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        var at = lseek((int)file.SafeFileHandle.DangerousGetHandle(), 0, SeekHole);
        Assert.True(at >= 0, $"lseek failed: errno {System.Runtime.InteropServices.Marshal.GetLastPInvokeError()}");
        return at;
    }

    [Fact]
    public void A_version_1_journal_left_by_an_older_gateway_is_recovered_and_then_written_in_the_binary_format()
    {
        // Version 1 wrote every record as snake_case JSON: one finished slot (provisional then final) and one started.
        var finished = LedgerHarness.NewRecord("req_old_finished", promptTokens: 7, completionTokens: 9) with { Model = "lattice:ü\"x" };
        var started = LedgerHarness.Provisional("req_old_started");
        using (var file = new FileStream(Path.Combine(Directory.CreateDirectory(_dir).FullName, UsageJournal.FileName), FileMode.CreateNew))
        {
            var bytes = new byte[FileHeaderBytes + Slots * SlotBytes];
            BitConverter.TryWriteBytes(bytes.AsSpan(0), 0x4A55544Cu);
            BitConverter.TryWriteBytes(bytes.AsSpan(4), 1);
            BitConverter.TryWriteBytes(bytes.AsSpan(8), Slots);
            BitConverter.TryWriteBytes(bytes.AsSpan(12), SlotBytes);
            WriteVersion1Slot(bytes, 3, JournalSlotState.Finished, LedgerHarness.Provisional("req_old_finished"), finished);
            WriteVersion1Slot(bytes, 5, JournalSlotState.Started, started, null);
            file.Write(bytes);
        }

        using (var journal = Open())
        {
            var found = journal.TakeLeftOvers().ToDictionary(r => r.Record.RequestId);
            Assert.Equal(2, found.Count);
            Assert.Equal(finished, found["req_old_finished"].Record);
            Assert.True(found["req_old_finished"].Finished);
            Assert.Equal(started with { Status = UsageStatuses.Interrupted }, found["req_old_started"].Record);
            Assert.Equal([3, 5], found.Values.Select(r => r.Slot).Order());
            // The old records' slots stay out of use until freed; new requests are journaled beside them.
            Assert.Equal(Slots - 2, journal.FreeSlots);
            Assert.True(journal.TryRecord(LedgerHarness.NewRecord("req_new"), out _));
        }
        // The file is this version's now, and holds both formats until the old slots are freed.
        Assert.Equal(2, BitConverter.ToInt32(File.ReadAllBytes(Path.Combine(_dir, UsageJournal.FileName)), 4));
        using var reopened = Open();
        Assert.Equal(["req_new", "req_old_finished", "req_old_started"], reopened.TakeLeftOvers().Select(r => r.Record.RequestId).Order());
    }

    private static void WriteVersion1Slot(byte[] file, int slot, JournalSlotState state, UsageRecord provisional, UsageRecord? final)
    {
        var s = file.AsSpan(FileHeaderBytes + slot * SlotBytes, SlotBytes);
        var first = System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(provisional, UsageJournalJsonContext.Default.UsageRecord);
        first.CopyTo(s[SlotHeaderBytes..]);
        BitConverter.TryWriteBytes(s[4..], first.Length);
        BitConverter.TryWriteBytes(s[8..], System.IO.Hashing.Crc32.HashToUInt32(first));
        if (final is not null)
        {
            var second = System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(final, UsageJournalJsonContext.Default.UsageRecord);
            second.CopyTo(s[(SlotHeaderBytes + first.Length)..]);
            BitConverter.TryWriteBytes(s[12..], second.Length);
            BitConverter.TryWriteBytes(s[16..], System.IO.Hashing.Crc32.HashToUInt32(second));
        }
        s[0] = (byte)state;
    }

    private byte[] ReadSlot(int slot)
    {
        using var file = new FileStream(Path.Combine(_dir, UsageJournal.FileName), FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        var bytes = new byte[SlotBytes];
        file.Position = FileHeaderBytes + (long)slot * SlotBytes;
        file.ReadExactly(bytes);
        return bytes;
    }

    private void FlipByte(int slot, int offsetInSlot)
    {
        using var file = new FileStream(Path.Combine(_dir, UsageJournal.FileName), FileMode.Open, FileAccess.ReadWrite);
        var at = FileHeaderBytes + (long)slot * SlotBytes + offsetInSlot;
        file.Position = at;
        var b = file.ReadByte();
        file.Position = at;
        file.WriteByte((byte)(b ^ 0x01));
    }
}
