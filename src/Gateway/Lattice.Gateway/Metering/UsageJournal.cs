using System.Buffers;
using System.Buffers.Binary;
using System.IO.Hashing;
using System.IO.MemoryMappedFiles;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Win32.SafeHandles;

namespace Lattice.Gateway.Metering;

/// <summary>A slot's state byte. Written last, so whatever it says was complete when it was written.</summary>
public enum JournalSlotState : byte
{
    Free = 0,
    /// <summary>Holds the provisional record of a request in flight.</summary>
    Started = 1,
    /// <summary>Holds the final record (and, after <see cref="Started"/>, the provisional one before it), not yet committed.</summary>
    Finished = 2,
}

/// <summary>A record left in the journal by an earlier process: a request it never committed.</summary>
/// <param name="Record">The final record, or for a request that never finished its provisional one with status <c>interrupted</c>.</param>
/// <param name="Finished">Whether <paramref name="Record"/> is the request's final record.</param>
public readonly record struct JournaledRecord(int Slot, UsageRecord Record, bool Finished);

/// <summary>
/// The crash-proof half of the usage ledger: <c>&lt;DataDirectory&gt;/usage-journal.bin</c>, a memory-mapped file of fixed-size
/// slots, one per request between its dispatch and the commit of its record.
/// </summary>
/// <remarks>
/// Why a shared mapping and not an append to a file: a store into a <c>MAP_SHARED</c> page is in the kernel's page cache
/// the moment it is made, so it survives <c>kill -9</c> of the gateway, and it costs no system call on the request path.
/// (It does not survive a power cut; neither does a write() without fsync, and an fsync per request is what the group
/// commit exists to avoid.)
///
/// Slot layout, little-endian: <c>[0] state</c>, <c>[1] payload format</c>, <c>[4] provisional length</c>,
/// <c>[8] provisional CRC32</c>, <c>[12] final length</c>, <c>[16] final CRC32</c>, then from byte 24 the provisional
/// record followed by the final one. Payload format 1 is <see cref="UsageRecordCodec"/>'s binary form (written since
/// file version 2); 0 is the snake_case JSON of file version 1, still read so that an upgrade recovers what the older
/// gateway left.
/// The final record goes after the provisional one rather than over it, so that a kill in the middle of writing it leaves
/// an intact provisional record (the request then shows as interrupted) instead of a torn one. Payloads and their CRCs
/// are written before the state byte, which is written with release semantics; a slot whose CRC does not match is
/// skipped on recovery.
///
/// A slot belongs to one request from <see cref="TryBegin"/> until <see cref="Free"/>, so slots need no lock; free slots
/// are handed out from a stack (<see cref="SlotStack"/>), the last freed first. One process owns a journal file (an
/// exclusive lock on it); a second gateway on the same data directory takes <c>usage-journal-1.bin</c>, and so on, and
/// recovers whatever an earlier owner of that file left.
/// </remarks>
public sealed unsafe partial class UsageJournal : IDisposable
{
    public const string FileName = "usage-journal.bin";

    /// <summary>Journal files tried per data directory: one per gateway process sharing it.</summary>
    public const int MaxFilesPerDirectory = 16;

    private const uint Magic = 0x4A55544C; // "LTUJ"
    /// <summary>2: binary payloads (<see cref="BinaryFormat"/>). Version 1 files (JSON payloads) are read and taken over.</summary>
    private const int Version = 2;
    private const int JsonVersion = 1;
    private const byte JsonFormat = 0;
    private const byte BinaryFormat = 1;
    private const int FormatAt = 1;
    private const int FileHeaderBytes = 4096;
    private const int SlotHeaderBytes = 24;
    private const int ProvisionalLengthAt = 4;
    private const int ProvisionalCrcAt = 8;
    private const int FinalLengthAt = 12;
    private const int FinalCrcAt = 16;

    private readonly FileStream _file;
    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private readonly SafeMemoryMappedViewHandle _handle;
    private readonly byte* _base;
    private readonly SlotStack _free;
    private readonly ILogger _logger;
    private List<int>? _leftOver;
    private int _disposed;

    private UsageJournal(string path, FileStream file, MemoryMappedFile map, MemoryMappedViewAccessor view, int slots, int slotBytes, ILogger logger)
    {
        Path = path;
        _file = file;
        _map = map;
        _view = view;
        _handle = view.SafeMemoryMappedViewHandle;
        byte* pointer = null;
        _handle.AcquirePointer(ref pointer);
        _base = pointer + view.PointerOffset;
        SlotCount = slots;
        SlotBytes = slotBytes;
        _free = new SlotStack(slots);
        _logger = logger;
    }

    public string Path { get; }
    public int SlotCount { get; }
    public int SlotBytes { get; }

    /// <summary>Slots free right now (a snapshot).</summary>
    public int FreeSlots => _free.Count;

    /// <summary>Largest payload (provisional plus final record) a slot holds.</summary>
    public int PayloadCapacity => SlotBytes - SlotHeaderBytes;

    /// <summary>
    /// Opens (or creates) the first journal file in <paramref name="directory"/> no other process or host holds. Slots an
    /// earlier process left in use are set aside for <see cref="TakeLeftOvers"/> and are not handed out until freed.
    /// </summary>
    public static UsageJournal Open(string directory, int slots, int slotBytes, ILogger? logger = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(slots, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(slotBytes, SlotHeaderBytes + 64);
        if (slotBytes % 8 != 0)
        {
            throw new ArgumentException("Slot size must be a multiple of 8.", nameof(slotBytes));
        }
        logger ??= NullLogger.Instance;
        Directory.CreateDirectory(directory);
        for (var n = 0; n < MaxFilesPerDirectory; n++)
        {
            var path = System.IO.Path.Combine(directory, n == 0 ? FileName : $"usage-journal-{n}.bin");
            FileStream file;
            try
            {
                // FileShare.None takes an exclusive lock (flock on Unix): two writers on one journal would hand out the
                // same slots and recover each other's requests in flight as interrupted.
                file = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, bufferSize: 1, FileOptions.None);
            }
            catch (IOException) when (File.Exists(path))
            {
                continue;
            }
            try
            {
                return OpenLocked(path, file, slots, slotBytes, logger);
            }
            catch
            {
                file.Dispose();
                throw;
            }
        }
        throw new IOException($"All {MaxFilesPerDirectory} usage journals in {directory} are held by other gateway processes.");
    }

    private static UsageJournal OpenLocked(string path, FileStream file, int slots, int slotBytes, ILogger logger)
    {
        // An existing journal keeps its own geometry while it holds records, so a change of configuration never loses them;
        // the configured one applies from the first start that finds it empty.
        var existing = ReadGeometry(file);
        if (existing is { } geometry && geometry != (slots, slotBytes))
        {
            var old = Map(path, file, geometry.Slots, geometry.SlotBytes, logger, initialize: false);
            if (old._leftOver!.Count > 0)
            {
                Log.KeptGeometry(logger, path, geometry.Slots, geometry.SlotBytes, old._leftOver.Count);
                return old;
            }
            old.ReleaseMapping();
            existing = null;
        }
        if (existing is null)
        {
            // A fresh (or reshaped) journal: all zeros is all slots free.
            file.SetLength(0);
        }
        return Map(path, file, slots, slotBytes, logger, initialize: existing is null);
    }

    /// <summary>
    /// Gives every page of the file its disk blocks now. <see cref="FileStream.SetLength"/> leaves holes, and a page of a
    /// shared mapping over a hole gets its block only when a request first writes a slot there: on a full disk that store
    /// is a SIGBUS and the whole gateway dies. Allocated here, a full disk is an <see cref="IOException"/> at start-up
    /// instead, and later stores into the mapping never need a block. Runs of zeros (a hole reads as zeros) are written back
    /// as read, so no record is changed; bytes holding data already have their blocks. (On a copy-on-write
    /// file system every store needs a new block whatever is done here; see docs/reliability.md.)
    /// </summary>
    private static void Allocate(FileStream file, long size)
    {
        if (OperatingSystem.IsLinux() && ReserveBlocks(file.SafeFileHandle, size))
        {
            return;
        }
        WriteBackZeros(file, size);
    }

    /// <summary>
    /// Linux's <c>fallocate</c> (mode 0): the file system gives every hole its blocks without a byte being written, and
    /// data already there is kept. False when the file system cannot (then zeros are written back instead); a full disk
    /// is an <see cref="IOException"/>.
    /// </summary>
    private static bool ReserveBlocks(SafeFileHandle handle, long size)
    {
        const int NoSpace = 28, NotSupported = 95;
        var added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            if (Fallocate((int)handle.DangerousGetHandle(), 0, 0, size) == 0)
            {
                return true;
            }
            var errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
            if (errno == NoSpace)
            {
                throw new IOException("There is no space left on the disk for the usage journal.");
            }
            return errno == NotSupported ? false : throw new IOException($"Reserving the usage journal's disk blocks failed (errno {errno}).");
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
        }
    }

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "fallocate", SetLastError = true)]
    private static partial int Fallocate(int fd, int mode, long offset, long length);

    /// <summary>Where <c>fallocate</c> is not there: every run of zeros is written back as read.</summary>
    private static void WriteBackZeros(FileStream file, long size)
    {
        // 512 bytes: the smallest block a file system has (ext4 on a small volume uses 1 KiB blocks, so a 4 KiB page can
        // hold data in one block and holes in the others). Runs of zero pieces are written back in one call.
        const int Piece = 512;
        const int Chunk = 64 * 1024;
        var buffer = ArrayPool<byte>.Shared.Rent(Chunk);
        try
        {
            for (long at = 0; at < size; at += Chunk)
            {
                var chunk = buffer.AsSpan(0, (int)Math.Min(Chunk, size - at));
                RandomAccess.Read(file.SafeFileHandle, chunk, at);
                var run = -1;
                for (var piece = 0; piece <= chunk.Length; piece += Piece)
                {
                    var zero = piece < chunk.Length && !chunk[piece..Math.Min(piece + Piece, chunk.Length)].ContainsAnyExcept((byte)0);
                    if (zero && run < 0)
                    {
                        run = piece;
                    }
                    else if (!zero && run >= 0)
                    {
                        RandomAccess.Write(file.SafeFileHandle, chunk[run..Math.Min(piece, chunk.Length)], at + run);
                        run = -1;
                    }
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static (int Slots, int SlotBytes)? ReadGeometry(FileStream file)
    {
        if (file.Length < FileHeaderBytes)
        {
            return null;
        }
        Span<byte> header = stackalloc byte[16];
        RandomAccess.Read(file.SafeFileHandle, header, 0);
        var slots = BinaryPrimitives.ReadInt32LittleEndian(header[8..]);
        var slotBytes = BinaryPrimitives.ReadInt32LittleEndian(header[12..]);
        var valid = BinaryPrimitives.ReadUInt32LittleEndian(header) == Magic
            && BinaryPrimitives.ReadInt32LittleEndian(header[4..]) is Version or JsonVersion
            && slots > 0 && slotBytes > SlotHeaderBytes && slotBytes % 8 == 0
            && file.Length >= FileHeaderBytes + (long)slots * slotBytes;
        return valid ? (slots, slotBytes) : null;
    }

    private static UsageJournal Map(string path, FileStream file, int slots, int slotBytes, ILogger logger, bool initialize)
    {
        var size = FileHeaderBytes + (long)slots * slotBytes;
        if (file.Length < size)
        {
            file.SetLength(size);
        }
        Allocate(file, size);
        var map = MemoryMappedFile.CreateFromFile(file, mapName: null, size, MemoryMappedFileAccess.ReadWrite, HandleInheritability.None, leaveOpen: true);
        MemoryMappedViewAccessor view;
        try
        {
            view = map.CreateViewAccessor(0, size, MemoryMappedFileAccess.ReadWrite);
        }
        catch
        {
            map.Dispose();
            throw;
        }
        var journal = new UsageJournal(path, file, map, view, slots, slotBytes, logger);
        var header = new Span<byte>(journal._base, 16);
        if (initialize)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(header, Magic);
            BinaryPrimitives.WriteInt32LittleEndian(header[8..], slots);
            BinaryPrimitives.WriteInt32LittleEndian(header[12..], slotBytes);
        }
        // A version 1 file is taken over: its slots say which format they hold, so its left-overs are still read.
        BinaryPrimitives.WriteInt32LittleEndian(header[4..], Version);
        var leftOver = new List<int>();
        // From the last slot down, so that the first handed out are those at the start of the file.
        for (var i = slots - 1; i >= 0; i--)
        {
            if (*journal.Slot(i) == (byte)JournalSlotState.Free)
            {
                journal._free.Push(i);
            }
            else
            {
                leftOver.Add(i);
            }
        }
        leftOver.Reverse();
        journal._leftOver = leftOver;
        return journal;
    }

    private byte* Slot(int index) => _base + FileHeaderBytes + (long)index * SlotBytes;

    /// <summary>Journals a request's provisional record in a free slot, as <see cref="JournalSlotState.Started"/>.</summary>
    /// <returns>False when no slot is free or the record does not fit one; the caller goes on without the journal.</returns>
    public bool TryBegin(UsageRecord provisional, out int slot)
    {
        if (!_free.TryPop(out slot))
        {
            slot = -1;
            return false;
        }
        if (!Write(slot, provisional, UsageEnd.Of(provisional), final: false))
        {
            _free.Push(slot);
            slot = -1;
            return false;
        }
        return true;
    }

    /// <summary>Adds the final record to a started slot and marks it <see cref="JournalSlotState.Finished"/>.</summary>
    /// <returns>False when the final record does not fit beside the provisional one; the slot stays started.</returns>
    public bool TryFinish(int slot, UsageRecord final) => Write(slot, final, UsageEnd.Of(final), final: true);

    /// <summary>
    /// <see cref="TryFinish(int, UsageRecord)"/> for the final record <paramref name="provisional"/> with <paramref name="end"/>
    /// makes (<see cref="UsageEnd.ApplyTo"/>), encoded without building it.
    /// </summary>
    public bool TryFinish(int slot, UsageRecord provisional, in UsageEnd end) => Write(slot, provisional, end, final: true);

    /// <summary>Journals a final record in a free slot at once (a request that ends before dispatch).</summary>
    public bool TryRecord(UsageRecord final, out int slot)
    {
        if (!_free.TryPop(out slot))
        {
            slot = -1;
            return false;
        }
        // A fresh slot: no provisional record before the final one.
        if (!Write(slot, final, UsageEnd.Of(final), final: true, fresh: true))
        {
            _free.Push(slot);
            slot = -1;
            return false;
        }
        return true;
    }

    /// <summary>Frees a slot whose record is committed (or was never needed) and returns it to the pool.</summary>
    public void Free(int slot)
    {
        if (Enter())
        {
            try
            {
                Volatile.Write(ref *Slot(slot), (byte)JournalSlotState.Free);
            }
            finally
            {
                _handle.DangerousRelease();
            }
            _free.Push(slot);
        }
    }

    private bool Write(int slot, UsageRecord record, in UsageEnd end, bool final, bool fresh = false)
    {
        if (!Enter())
        {
            return false;
        }
        try
        {
            var s = Slot(slot);
            var offset = final && !fresh ? *(int*)(s + ProvisionalLengthAt) : 0;
            if ((uint)offset > (uint)PayloadCapacity)
            {
                return false;
            }
            // Encoded in place: no buffer, no copy.
            var room = new Span<byte>(s + SlotHeaderBytes + offset, PayloadCapacity - offset);
            var length = UsageRecordCodec.Encode(record, end, room);
            if (length < 0)
            {
                return false;
            }
            var payload = room[..length];
            var crc = Crc32.HashToUInt32(payload);
            s[FormatAt] = BinaryFormat;
            if (final)
            {
                if (fresh)
                {
                    *(int*)(s + ProvisionalLengthAt) = 0;
                    *(uint*)(s + ProvisionalCrcAt) = 0;
                }
                *(int*)(s + FinalLengthAt) = payload.Length;
                *(uint*)(s + FinalCrcAt) = crc;
            }
            else
            {
                *(int*)(s + ProvisionalLengthAt) = payload.Length;
                *(uint*)(s + ProvisionalCrcAt) = crc;
                *(int*)(s + FinalLengthAt) = 0;
                *(uint*)(s + FinalCrcAt) = 0;
            }
            // Release semantics: neither the compiler nor the CPU moves the payload and CRC stores after this one, so a
            // state byte that says started/finished always describes bytes that were fully written.
            Volatile.Write(ref *s, (byte)(final ? JournalSlotState.Finished : JournalSlotState.Started));
            return true;
        }
        finally
        {
            _handle.DangerousRelease();
        }
    }

    /// <summary>
    /// Pins the mapping for one access. The ledger may be disposed while a straggling request still completes; a write
    /// to an unmapped page would crash the process, so every access holds a reference the unmap waits for.
    /// </summary>
    private bool Enter()
    {
        var entered = false;
        try
        {
            _handle.DangerousAddRef(ref entered);
        }
        catch (ObjectDisposedException)
        {
        }
        return entered;
    }

    /// <summary>
    /// The records an earlier process left (every slot in use when this journal was opened), decoded once; corrupt slots
    /// are logged and freed here. Slots in use by this process are never among them. The caller commits the records and
    /// then frees their slots.
    /// </summary>
    public IReadOnlyList<JournaledRecord> TakeLeftOvers()
    {
        var slots = Interlocked.Exchange(ref _leftOver, []) ?? [];
        var found = new List<JournaledRecord>(slots.Count);
        foreach (var slot in slots)
        {
            if (Read(slot) is { } record)
            {
                found.Add(record);
            }
            else
            {
                Free(slot);
            }
        }
        return found;
    }

    /// <summary>
    /// The final record of a slot this process finished (<see cref="TryFinish(int, UsageRecord, in UsageEnd)"/>, <see cref="TryRecord"/>), encoded, for
    /// the commit loop to bind; call between <see cref="Pin"/> and <see cref="Unpin"/>, before the slot is freed.
    /// </summary>
    internal ReadOnlySpan<byte> Final(int slot)
    {
        var s = Slot(slot);
        return new ReadOnlySpan<byte>(s + SlotHeaderBytes + *(int*)(s + ProvisionalLengthAt), *(int*)(s + FinalLengthAt));
    }

    /// <summary>Holds the mapping for a run of <see cref="Final"/> reads; false once the journal is disposed.</summary>
    internal bool Pin() => Enter();

    internal void Unpin() => _handle.DangerousRelease();

    private JournaledRecord? Read(int slot)
    {
        var s = Slot(slot);
        var state = (JournalSlotState)Volatile.Read(ref *s);
        var format = s[FormatAt];
        var provisionalLength = *(int*)(s + ProvisionalLengthAt);
        var provisional = provisionalLength > 0 ? Decode(s, format, 0, provisionalLength, *(uint*)(s + ProvisionalCrcAt)) : null;
        switch (state)
        {
            case JournalSlotState.Finished:
                if (Decode(s, format, Math.Max(provisionalLength, 0), *(int*)(s + FinalLengthAt), *(uint*)(s + FinalCrcAt)) is { } final)
                {
                    return new JournaledRecord(slot, final, Finished: true);
                }
                if (provisional is not null)
                {
                    Log.CorruptFinalRecord(_logger, Path, slot);
                    return new JournaledRecord(slot, AsInterrupted(provisional), Finished: false);
                }
                break;
            case JournalSlotState.Started:
                if (provisional is not null)
                {
                    return new JournaledRecord(slot, AsInterrupted(provisional), Finished: false);
                }
                break;
        }
        Log.CorruptSlot(_logger, Path, slot, (byte)state);
        return null;
    }

    private static UsageRecord AsInterrupted(UsageRecord provisional) =>
        provisional.Status == UsageStatuses.Interrupted ? provisional : provisional with { Status = UsageStatuses.Interrupted };

    private UsageRecord? Decode(byte* s, byte format, int offset, int length, uint crc)
    {
        if (length <= 0 || (uint)offset > (uint)PayloadCapacity || length > PayloadCapacity - offset)
        {
            return null;
        }
        var payload = new ReadOnlySpan<byte>(s + SlotHeaderBytes + offset, length);
        if (Crc32.HashToUInt32(payload) != crc)
        {
            return null;
        }
        switch (format)
        {
            case BinaryFormat:
                return UsageRecordCodec.Decode(payload);
            case JsonFormat:
                try
                {
                    return JsonSerializer.Deserialize(payload, UsageJournalJsonContext.Default.UsageRecord);
                }
                catch (JsonException)
                {
                    // A matching CRC over JSON this version cannot read. Skipped like a torn slot.
                    return null;
                }
            default:
                // A format from a later version.
                return null;
        }
    }

    private void ReleaseMapping()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _handle.ReleasePointer();
            // The unmap itself waits (SafeHandle reference count) for any access still in progress.
            _view.Dispose();
            _map.Dispose();
        }
    }

    public void Dispose()
    {
        ReleaseMapping();
        _file.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 8001, Level = LogLevel.Warning, Message = "Usage journal {Path}: slot {Slot} (state {State}) holds no intact record; skipped")]
        public static partial void CorruptSlot(ILogger logger, string path, int slot, byte state);

        [LoggerMessage(EventId = 8002, Level = LogLevel.Warning, Message = "Usage journal {Path}: slot {Slot}'s final record is damaged; its provisional record is recovered as interrupted")]
        public static partial void CorruptFinalRecord(ILogger logger, string path, int slot);

        [LoggerMessage(EventId = 8003, Level = LogLevel.Information, Message = "Usage journal {Path} keeps its geometry ({Slots} x {SlotBytes} bytes) while it holds {Records} records; the configured one applies once it is empty")]
        public static partial void KeptGeometry(ILogger logger, string path, int slots, int slotBytes, int records);
    }
}

/// <summary>
/// The journal's free slots, handed out last freed first: the slots in use stay few and the same (those of the requests
/// in flight and the batch awaiting its commit), so the request path writes into pages already in the CPU's caches and
/// the kernel's dirty pages stay few, rather than every store going to the next of thousands of cold slots in turn.
/// </summary>
internal sealed class SlotStack(int capacity)
{
    private readonly int[] _stack = new int[capacity];
    private readonly Lock _gate = new();
    private int _count;

    /// <summary>A snapshot.</summary>
    public int Count => Volatile.Read(ref _count);

    public bool TryPop(out int slot)
    {
        lock (_gate)
        {
            if (_count == 0)
            {
                slot = -1;
                return false;
            }
            slot = _stack[--_count];
            return true;
        }
    }

    public void Push(int slot)
    {
        lock (_gate)
        {
            // Each slot is free at most once, so the stack never holds more than the journal's slots.
            if (_count < _stack.Length)
            {
                _stack[_count++] = slot;
            }
        }
    }
}

/// <summary>The payload format of version 1 journals (a <see cref="UsageRecord"/> as snake_case JSON): read when an upgrade finds one.</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[JsonSerializable(typeof(UsageRecord))]
internal sealed partial class UsageJournalJsonContext : JsonSerializerContext;
