namespace Lattice.Runtime.Engines.Audio;

/// <summary>A growable list of float samples (a <see cref="List{T}"/> without the per-item overhead of its API).</summary>
internal sealed class SampleBuffer(int initialCapacity = 16_000)
{
    private float[] _items = new float[Math.Max(16, initialCapacity)];

    public int Count { get; private set; }

    public ReadOnlySpan<float> Span => _items.AsSpan(0, Count);

    public void Add(float value)
    {
        if (Count == _items.Length)
        {
            Grow(Count + 1);
        }
        _items[Count++] = value;
    }

    public void AddRange(ReadOnlySpan<float> values)
    {
        if (Count + values.Length > _items.Length)
        {
            Grow(Count + values.Length);
        }
        values.CopyTo(_items.AsSpan(Count));
        Count += values.Length;
    }

    /// <summary>The samples, without copying when the buffer is exactly full.</summary>
    public float[] ToArray() => Count == _items.Length ? _items : _items.AsSpan(0, Count).ToArray();

    private void Grow(int needed) =>
        Array.Resize(ref _items, (int)Math.Min(Array.MaxLength, Math.Max(needed, (long)_items.Length * 2)));
}
