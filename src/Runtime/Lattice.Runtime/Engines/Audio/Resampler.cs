using System.Numerics;

namespace Lattice.Runtime.Engines.Audio;

/// <summary>
/// A streaming band-limited resampler for mono float audio: polyphase windowed-sinc interpolation (Kaiser window,
/// 16 zero crossings each side) with a cut-off just below the lower of the two Nyquist frequencies, so downsampling
/// does not alias and upsampling does not image. Output sample <c>n</c> is taken at input time
/// <c>n · inRate / outRate</c>, computed exactly in integers, so long inputs do not drift.
/// </summary>
/// <remarks>
/// Feed input with <see cref="Process"/> in chunks of any size, then call <see cref="Flush"/> once; the output has
/// <c>ceil(inputLength · outRate / inRate)</c> samples. One filter is kept per distinct phase
/// (<c>outRate / gcd(inRate, outRate)</c> of them: 160 for 44.1 kHz → 16 kHz, 1 for 48 kHz → 16 kHz), built on first use.
/// </remarks>
internal sealed class Resampler
{
    private const int ZeroCrossings = 16;
    private const double KaiserBeta = 8.6;
    // Pass band edge as a fraction of the lower Nyquist frequency: 7.56 kHz when the output is 16 kHz.
    private const double Rolloff = 0.945;

    private readonly int _step;        // input rate / gcd: input samples advanced per `_phases` outputs
    private readonly int _phases;      // output rate / gcd
    private readonly int _halfTaps;    // taps on each side of the output instant
    private readonly double _cutoff;   // cycles per input sample
    private readonly float[]?[] _filters;
    private float[] _pending;          // input not yet consumed, starting at absolute index _pendingStart
    private int _pendingCount;
    private long _pendingStart;
    private long _inputCount;
    private long _outputCount;
    private bool _flushed;

    public Resampler(int inputRate, int outputRate)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(inputRate);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(outputRate);
        var gcd = Gcd(inputRate, outputRate);
        _step = inputRate / gcd;
        _phases = outputRate / gcd;
        _cutoff = 0.5 * Math.Min(1.0, (double)outputRate / inputRate) * Rolloff;
        _halfTaps = (int)Math.Ceiling(ZeroCrossings / (2 * _cutoff));
        _filters = new float[_phases][];
        // Zeros before the first sample, so the first outputs have a full window.
        _pending = new float[Math.Max(4096, 4 * _halfTaps)];
        _pendingCount = _halfTaps - 1;
        _pendingStart = -(_halfTaps - 1);
    }

    /// <summary>Number of output samples for <paramref name="inputLength"/> input samples.</summary>
    public static long OutputLength(long inputLength, int inputRate, int outputRate) =>
        ((inputLength * outputRate) + inputRate - 1) / inputRate;

    /// <summary>Adds input and appends every output sample that can now be computed.</summary>
    public void Process(ReadOnlySpan<float> input, SampleBuffer output)
    {
        if (_flushed)
        {
            throw new InvalidOperationException("The resampler was already flushed.");
        }
        Append(input);
        _inputCount += input.Length;
        Produce(output, long.MaxValue);
    }

    /// <summary>Ends the input (as if followed by silence) and appends the remaining output.</summary>
    public void Flush(SampleBuffer output)
    {
        if (_flushed)
        {
            return;
        }
        _flushed = true;
        Span<float> silence = stackalloc float[256];
        for (var remaining = _halfTaps + 1; remaining > 0; remaining -= silence.Length)
        {
            Append(silence[..Math.Min(remaining, silence.Length)]);
        }
        Produce(output, OutputLength(_inputCount, _step, _phases));
    }

    private void Append(ReadOnlySpan<float> input)
    {
        if (_pendingCount + input.Length > _pending.Length)
        {
            Array.Resize(ref _pending, Math.Max(_pending.Length * 2, _pendingCount + input.Length));
        }
        input.CopyTo(_pending.AsSpan(_pendingCount));
        _pendingCount += input.Length;
    }

    private void Produce(SampleBuffer output, long limit)
    {
        var available = _pendingStart + _pendingCount; // absolute index one past the last buffered sample
        while (_outputCount < limit)
        {
            // Input time of this output: center + phase / _phases (exact integer arithmetic).
            var numerator = _outputCount * _step;
            var center = numerator / _phases;
            var phase = (int)(numerator - (center * _phases));
            var first = center - _halfTaps + 1;
            if (center + _halfTaps >= available)
            {
                break;
            }
            var filter = _filters[phase] ??= BuildFilter(phase);
            var window = _pending.AsSpan((int)(first - _pendingStart), filter.Length);
            output.Add(Dot(window, filter));
            _outputCount++;
        }

        // Keep what later outputs still need.
        var nextCenter = _outputCount * _step / _phases;
        var keepFrom = nextCenter - _halfTaps + 1;
        var drop = (int)Math.Clamp(keepFrom - _pendingStart, 0, _pendingCount);
        if (drop > 0)
        {
            _pending.AsSpan(drop, _pendingCount - drop).CopyTo(_pending);
            _pendingCount -= drop;
            _pendingStart += drop;
        }
    }

    /// <summary>Taps at input offsets <c>-halfTaps+1 … halfTaps</c> around the output instant, normalised to unit DC gain.</summary>
    private float[] BuildFilter(int phase)
    {
        var fraction = (double)phase / _phases;
        var taps = new double[2 * _halfTaps];
        double sum = 0;
        for (var j = 0; j < taps.Length; j++)
        {
            var t = (j - (_halfTaps - 1)) - fraction; // distance in input samples
            var x = t / _halfTaps;
            if (Math.Abs(x) >= 1)
            {
                continue;
            }
            var sinc = t == 0 ? 1 : Math.Sin(2 * Math.PI * _cutoff * t) / (2 * Math.PI * _cutoff * t);
            taps[j] = 2 * _cutoff * sinc * BesselI0(KaiserBeta * Math.Sqrt(1 - (x * x))) / BesselI0(KaiserBeta);
            sum += taps[j];
        }
        var filter = new float[taps.Length];
        for (var j = 0; j < taps.Length; j++)
        {
            filter[j] = (float)(taps[j] / sum);
        }
        return filter;
    }

    private static float Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        var i = 0;
        var sum = 0f;
        if (Vector.IsHardwareAccelerated && a.Length >= Vector<float>.Count)
        {
            var acc = Vector<float>.Zero;
            for (; i <= a.Length - Vector<float>.Count; i += Vector<float>.Count)
            {
                acc += new Vector<float>(a[i..]) * new Vector<float>(b[i..]);
            }
            sum = Vector.Sum(acc);
        }
        for (; i < a.Length; i++)
        {
            sum += a[i] * b[i];
        }
        return sum;
    }

    private static double BesselI0(double x)
    {
        double sum = 1, term = 1, half = x / 2;
        for (var k = 1; k < 64; k++)
        {
            term *= half / k;
            var squared = term * term;
            sum += squared;
            if (squared < sum * 1e-17)
            {
                break;
            }
        }
        return sum;
    }

    private static int Gcd(int a, int b)
    {
        while (b != 0)
        {
            (a, b) = (b, a % b);
        }
        return a;
    }
}
