// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title ExpiringPause
/// @notice An emergency brake that releases itself: a pause lasts at most `maxPause` seconds, its holder may lift
///         it early, and a new pause cannot start until `maxPause` seconds after the previous one ended.
/// @dev Invariants (what makes a stolen pauser key a delay, never a shutdown):
///  - `paused()` is true only while `block.timestamp < pausedUntil`, and `pausedUntil <= start + maxPause`;
///  - between two pauses the contract is unpaused for at least `maxPause` seconds (`pauseCooldownEnds`), so
///    over any window it is paused at most about half of the time;
///  - the deploying contract checks `maxPause` against its own deadlines (the ClearingHouse requires
///    `maxPause < freezePeriod`: a pause can never by itself outlast the time the operator has to post a batch).
abstract contract ExpiringPause {
    /// @notice Longest a pause lasts, and the minimum gap between two pauses (seconds).
    uint256 public immutable maxPause;
    /// @notice The current pause ends at this timestamp (0 or in the past: not paused).
    uint64 public pausedUntil;
    /// @notice No new pause may start before this timestamp.
    uint64 public pauseCooldownEnds;

    /// @notice Paused until `until` by `by`.
    event Paused(address indexed by, uint256 until);
    /// @notice The pause was lifted early by `by`.
    event Unpaused(address indexed by);

    /// @notice The call is blocked while paused.
    error EnforcedPause(uint256 until);
    /// @notice maxPause must be > 0.
    error ZeroMaxPause();
    /// @notice A new pause cannot start before `until` (the gap after the previous pause).
    error PauseCooldown(uint256 until);
    /// @notice Not paused: nothing to lift.
    error NotPaused();

    /// @param maxPause_ longest pause and minimum gap between pauses, in seconds (> 0)
    constructor(uint256 maxPause_) {
        if (maxPause_ == 0) revert ZeroMaxPause();
        maxPause = maxPause_;
    }

    modifier whenNotPaused() {
        if (paused()) revert EnforcedPause(pausedUntil);
        _;
    }

    /// @notice True while a pause is in force.
    /// @return whether paused now
    function paused() public view returns (bool) {
        return block.timestamp < pausedUntil;
    }

    function _pause() internal {
        if (block.timestamp < pauseCooldownEnds) revert PauseCooldown(pauseCooldownEnds);
        uint256 until = block.timestamp + maxPause;
        pausedUntil = uint64(until);
        pauseCooldownEnds = uint64(until + maxPause);
        emit Paused(msg.sender, until);
    }

    function _unpause() internal {
        if (!paused()) revert NotPaused();
        pausedUntil = uint64(block.timestamp);
        pauseCooldownEnds = uint64(block.timestamp + maxPause);
        emit Unpaused(msg.sender);
    }
}
