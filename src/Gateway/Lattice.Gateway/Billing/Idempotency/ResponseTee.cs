using System.Buffers;

namespace Lattice.Gateway.Billing.Idempotency;

/// <summary>
/// The response body on its way to the client, with a copy kept up to a limit. Writes and flushes go straight through,
/// so a stream reaches the client as it is produced; past the limit the copy is dropped and only the fact is kept.
/// </summary>
internal sealed class ResponseTee(Stream inner, int limit) : Stream
{
    private ArrayBufferWriter<byte>? _kept = new(4096);

    /// <summary>True once the answer outgrew the limit: it cannot be replayed.</summary>
    public bool Overflowed => _kept is null;

    /// <summary>The answer's bytes so far (empty once <see cref="Overflowed"/>).</summary>
    public ReadOnlySpan<byte> Kept => _kept is null ? default : _kept.WrittenSpan;

    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        Keep(buffer);
        inner.Write(buffer);
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        Keep(buffer.Span);
        return inner.WriteAsync(buffer, cancellationToken);
    }

    public override void Flush() => inner.Flush();

    public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();

    private void Keep(ReadOnlySpan<byte> bytes)
    {
        if (_kept is null)
        {
            return;
        }
        if ((long)_kept.WrittenCount + bytes.Length > limit)
        {
            _kept = null;
            return;
        }
        _kept.Write(bytes);
    }
}
