// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Test} from "forge-std/Test.sol";

import {ClearingHouse} from "../../src/ClearingHouse.sol";
import {InsuranceFund} from "../../src/InsuranceFund.sol";
import {Vault} from "../../src/Vault.sol";
import {HxTimelock} from "../../src/governance/HxTimelock.sol";
import {SumTree} from "../../src/libraries/SumTree.sol";
import {TestToken} from "../../src/test-tokens/TestToken.sol";
import {TreeBuilder} from "../helpers/TreeBuilder.sol";

/// @notice Drives the system like its real users: depositors, the operator (with a faithful engine model),
///         a guardian that pauses and tries everything else, governance through the timelock, time passing,
///         a freeze, honest exits, forged exits, reclaims. Ghost variables record what the invariants check.
contract Handler is Test {
    using TreeBuilder for TreeBuilder.Tree;

    struct Dep {
        uint48 id;
        address account;
        address token;
        uint256 amount;
    }

    ClearingHouse public immutable ch;
    Vault public immutable vault;
    InsuranceFund public immutable fund;
    HxTimelock public immutable timelock;
    address public immutable operator;
    address public immutable guardian;
    address public immutable governor;
    uint256 public immutable freezePeriod;
    uint256 public immutable timelockDelay;

    address[] public actors;
    address[] public tokens;

    // engine model: credited balances, and the snapshot the last accepted batch committed
    mapping(address token => mapping(address account => uint256)) public bal;
    mapping(address token => mapping(address account => uint256)) public committed;
    mapping(address token => uint256) public fundModel;
    Dep[] internal _deps;
    uint48 public creditedUpTo;
    uint64 internal _nextWithdrawalId = 1;
    uint256 internal _salt;

    // ghosts
    uint64 public ghostBatches;
    bytes32 public ghostLastHash;
    bool public ghostChainBroken;
    mapping(address token => uint256) public ghostFund; // changed only by accepted batches and the timelock
    mapping(address token => uint256) public ghostEscaped;
    mapping(address token => mapping(address account => uint256)) public ghostEscapedBy;
    mapping(address token => mapping(address account => uint256)) public ghostEscapeCount;
    mapping(address token => uint256) public ghostReclaimed;
    mapping(uint256 depositId => bool) internal _reclaimed;
    bool public ghostForgedSuccess;
    bool public ghostGuardianMovedFunds;
    uint256 public ghostHonestExitsWhilePaused;
    mapping(bytes32 => uint256) public calls;

    constructor(
        ClearingHouse ch_,
        HxTimelock timelock_,
        address operator_,
        address guardian_,
        address governor_,
        address[] memory actors_,
        uint256 timelockDelay_
    ) {
        ch = ch_;
        vault = ch_.vault();
        fund = ch_.insuranceFund();
        timelock = timelock_;
        operator = operator_;
        guardian = guardian_;
        governor = governor_;
        freezePeriod = ch_.freezePeriod();
        timelockDelay = timelockDelay_;
        actors = actors_;
        tokens = vault.listedTokens();
    }

    // ------------------------------------------------------------------ helpers

    function actorCount() external view returns (uint256) {
        return actors.length;
    }

    function tokenCount() external view returns (uint256) {
        return tokens.length;
    }

    function committedTotal(address token) public view returns (uint256 s) {
        for (uint256 i; i < actors.length; ++i) {
            s += committed[token][actors[i]];
        }
    }

    function _amounts(address token) internal view returns (uint256[] memory a) {
        a = new uint256[](actors.length);
        for (uint256 i; i < actors.length; ++i) {
            a[i] = committed[token][actors[i]];
        }
    }

    function _committedAssets() internal view returns (ClearingHouse.AssetCommitment[] memory a) {
        a = new ClearingHouse.AssetCommitment[](tokens.length);
        for (uint256 i; i < tokens.length; ++i) {
            TreeBuilder.Tree memory t = TreeBuilder.build(tokens[i], actors, _amounts(tokens[i]));
            a[i] = ClearingHouse.AssetCommitment(tokens[i], t.root(), t.total());
        }
    }

    // ------------------------------------------------------------------ actions

    function deposit(uint256 actorSeed, uint256 tokenSeed, uint256 amount) external {
        if (ch.frozen() || vault.paused()) return;
        calls["deposit"]++;
        address who = actors[actorSeed % actors.length];
        address token = tokens[tokenSeed % tokens.length];
        amount = bound(amount, 1, 1e27);
        TestToken(token).mint(who, amount);
        vm.startPrank(who);
        TestToken(token).approve(address(vault), amount);
        uint48 id = vault.deposit(token, amount, who);
        vm.stopPrank();
        _deps.push(Dep(id, who, token, amount));
    }

    function submitBatch(uint256 creditSeed, uint256 seed, uint256 wAmt, uint256 feeAmt, uint256 coverAmt)
        external
    {
        if (ch.frozen() || ch.paused()) return;
        calls["submitBatch"]++;
        // the engine credits a prefix of the deposits (the rest await confirmations)
        uint48 d = uint48(bound(creditSeed, creditedUpTo, vault.depositCount()));
        for (uint256 i = creditedUpTo; i < d; ++i) {
            Dep memory dep = _deps[i];
            bal[dep.token][dep.account] += dep.amount;
        }
        creditedUpTo = d;

        address token = tokens[seed % tokens.length];
        ClearingHouse.Withdrawal[] memory ws = new ClearingHouse.Withdrawal[](0);
        ClearingHouse.InsuranceMove[] memory ims = new ClearingHouse.InsuranceMove[](0);
        {
            address a = actors[(seed >> 8) % actors.length];
            uint256 w = bound(wAmt, 0, bal[token][a]);
            if (w > 0) {
                bal[token][a] -= w;
                ws = new ClearingHouse.Withdrawal[](1);
                ws[0] = ClearingHouse.Withdrawal(_nextWithdrawalId++, a, token, w);
            }
        }
        int256 move;
        {
            address payer = actors[(seed >> 16) % actors.length];
            uint256 fee = bound(feeAmt, 0, bal[token][payer]); // fees / liquidation surplus -> fund
            bal[token][payer] -= fee;
            fundModel[token] += fee;
            address c = actors[(seed >> 24) % actors.length];
            uint256 cover = bound(coverAmt, 0, fundModel[token]); // fund covers c's loss
            bal[token][c] += cover;
            fundModel[token] -= cover;
            move = int256(fee) - int256(cover);
            if (move != 0) {
                ims = new ClearingHouse.InsuranceMove[](1);
                ims[0] = ClearingHouse.InsuranceMove(token, move);
            }
        }
        for (uint256 i; i < tokens.length; ++i) {
            for (uint256 j; j < actors.length; ++j) {
                committed[tokens[i]][actors[j]] = bal[tokens[i]][actors[j]];
            }
        }
        ClearingHouse.Batch memory b = ClearingHouse.Batch({
            batchId: ch.lastBatchId() + 1,
            prevBatchHash: ch.lastBatchHash(),
            lastCreditedDepositId: d,
            assets: _committedAssets(),
            withdrawals: ws,
            insuranceMoves: ims,
            data: abi.encode(seed)
        });
        if (b.batchId != ghostBatches + 1 || b.prevBatchHash != ghostLastHash) ghostChainBroken = true;
        vm.prank(operator);
        bytes32 h = ch.submitBatch(b);
        if (h == ghostLastHash || ch.lastBatchId() != ghostBatches + 1) ghostChainBroken = true;
        ghostBatches += 1;
        ghostLastHash = h;
        if (move > 0) ghostFund[token] += uint256(move);
        else ghostFund[token] -= uint256(-move);
        vm.warp(block.timestamp + (seed % 600));
    }

    function warpAndMaybeFreeze(uint256 secs, bool tryFreeze) external {
        calls["warp"]++;
        vm.warp(block.timestamp + bound(secs, 1, 2 * freezePeriod));
        if (!tryFreeze || ch.frozen()) return;
        if (block.timestamp >= uint256(ch.lastBatchAt()) + freezePeriod) {
            ch.freeze();
            calls["freeze"]++;
        } else {
            try ch.freeze() {
                ghostChainBroken = true; // froze a live exchange: flag through any invariant
            } catch {}
        }
    }

    function escape(uint256 actorSeed, uint256 tokenSeed) external {
        if (!ch.frozen() || ghostBatches == 0) return;
        address who = actors[actorSeed % actors.length];
        uint256 ti = tokenSeed % tokens.length;
        address token = tokens[ti];
        uint256 leafIndex = actorSeed % actors.length;
        uint256 amount = committed[token][who];
        SumTree.Node[] memory p = TreeBuilder.build(token, actors, _amounts(token)).proof(leafIndex);
        ClearingHouse.AssetCommitment[] memory a = _committedAssets();
        if (ghostEscapeCount[token][who] > 0) {
            vm.prank(who);
            try ch.escapeWithdraw(a, ti, amount, leafIndex, p, who) {
                ghostEscapeCount[token][who] += 1; // a second exit: the invariant fails
                ghostEscaped[token] += amount;
            } catch {}
            return;
        }
        calls["escape"]++;
        uint256 before = TestToken(token).balanceOf(who);
        vm.prank(who);
        ch.escapeWithdraw(a, ti, amount, leafIndex, p, who); // honest exits never revert (fail_on_revert)
        uint256 got = TestToken(token).balanceOf(who) - before;
        ghostEscapeCount[token][who] += 1;
        ghostEscapedBy[token][who] += got;
        ghostEscaped[token] += got;
        if (ch.paused() || vault.paused()) ghostHonestExitsWhilePaused++;
    }

    /// Forged exits: inflate the amount, claim another account's leaf, or tamper with a sibling sum.
    function forgeEscape(uint256 actorSeed, uint256 tokenSeed, uint256 extra, uint8 how) external {
        if (ghostBatches == 0) return;
        calls["forge"]++;
        address who = actors[actorSeed % actors.length];
        uint256 ti = tokenSeed % tokens.length;
        address token = tokens[ti];
        uint256 leafIndex = actorSeed % actors.length;
        uint256 amount = committed[token][who];
        extra = bound(extra, 1, 1e27);
        SumTree.Node[] memory p = TreeBuilder.build(token, actors, _amounts(token)).proof(leafIndex);
        ClearingHouse.AssetCommitment[] memory a = _committedAssets();
        address caller = who;
        how = how % 3;
        if (how == 0) {
            amount += extra;
        } else if (how == 1) {
            caller = actors[(leafIndex + 1) % actors.length]; // someone else's leaf
        } else {
            p[extra % p.length].sum += extra;
            amount += extra;
        }
        vm.prank(caller);
        try ch.escapeWithdraw(a, ti, amount, leafIndex, p, caller) {
            ghostForgedSuccess = true;
        } catch {}
    }

    /// The guardian pauses, then tries every path that moves funds or blocks exits.
    function guardianActs(uint256 seed) external {
        calls["guardian"]++;
        vm.startPrank(guardian);
        if (seed % 2 == 0 && !ch.paused()) ch.pause();
        if (seed % 3 == 0 && !vault.paused()) vault.pause();
        address token = tokens[seed % tokens.length];
        try vault.transferOut(token, guardian, 1) {
            ghostGuardianMovedFunds = true;
        } catch {}
        try vault.payout(guardian, token, 1) {
            ghostGuardianMovedFunds = true;
        } catch {}
        try fund.withdraw(token, guardian, 1) {
            ghostGuardianMovedFunds = true;
        } catch {}
        try fund.payToVault(0, token, 1) {
            ghostGuardianMovedFunds = true;
        } catch {}
        try vault.listToken(address(0xdead)) {
            ghostGuardianMovedFunds = true;
        } catch {}
        try ch.grantRole(ch.OPERATOR_ROLE(), guardian) {
            ghostGuardianMovedFunds = true;
        } catch {}
        vm.stopPrank();
    }

    function _timelock(address target, bytes memory data) internal {
        bytes32 salt = bytes32(++_salt);
        vm.prank(governor);
        timelock.schedule(target, 0, data, bytes32(0), salt, timelockDelay);
        vm.warp(block.timestamp + timelockDelay);
        vm.prank(governor);
        timelock.execute(target, 0, data, bytes32(0), salt);
    }

    function governanceUnpause() external {
        if (!ch.paused() && !vault.paused()) return;
        calls["unpause"]++;
        if (ch.paused()) _timelock(address(ch), abi.encodeCall(ClearingHouse.unpause, ()));
        if (vault.paused()) _timelock(address(vault), abi.encodeCall(Vault.unpause, ()));
    }

    /// Governance takes money out of the fund through the timelock; the engine's fund follows the event.
    function governanceFundWithdraw(uint256 tokenSeed, uint256 amount) external {
        address token = tokens[tokenSeed % tokens.length];
        amount = bound(amount, 0, fund.expectedBalance(token));
        if (amount == 0) return;
        calls["govWithdraw"]++;
        _timelock(address(fund), abi.encodeCall(InsuranceFund.withdraw, (token, governor, amount)));
        fundModel[token] -= amount;
        ghostFund[token] -= amount;
    }

    function reclaim(uint256 seed) external {
        if (!ch.frozen() || _deps.length == 0) return;
        Dep memory dep = _deps[seed % _deps.length];
        if (dep.id <= ch.lastCreditedDepositId()) {
            vm.prank(dep.account);
            try ch.reclaimDeposit(dep.id, dep.token, dep.amount, dep.account) {
                ghostForgedSuccess = true; // a credited deposit is in the tree: reclaiming it double-pays
            } catch {}
            return;
        }
        if (_reclaimed[dep.id]) return;
        calls["reclaim"]++;
        vm.prank(dep.account);
        ch.reclaimDeposit(dep.id, dep.token, dep.amount, dep.account);
        _reclaimed[dep.id] = true;
        ghostReclaimed[dep.token] += dep.amount;
    }
}
